"""Performs a runbook on one host: the step loop over the run's policies.

One ``Executor`` runs one runbook on one host and keeps no global state, so a pool
can run many at once (one per host, each with its own connection, lock, record and
rollback). It never prints: everything it has to say goes to an ``Events`` object
(the CLI renders it) and the final ``RunOutcome`` is plain data (``run_types``).

The executor is the loop; each policy it applies lives in its own module:

- ``run_setup``: the run to resume, stale inputs, the record it writes;
- ``opening``: connect, preflight, lock, stop what a killed run left, host facts;
  ``connection``: the run's one transport and its host lock;
- ``selection``: which steps ``--from``/``--only`` run;
- ``resume_plan``: whether a ``--resume`` is refused (inputs changed) and what it runs
  again; ``resume_checks``: the ``check`` probes that decision needs;
  ``captures``: the captured values a run takes from its record or history;
- ``step_render``: each step rendered at run time; ``attempts``: its gates (``when``,
  ``skip_if``, ``confirm``) and retries; ``command_runner``: its commands performed,
  interruptibly; ``run_output``: what the run says, masked;
- ``journal``: where the record and the log are written (the persistence seam);
- ``remote_guard``: a remote command is never left running beside what follows;
- ``step_failure``: a failed step's record and report; ``run_rollback`` over
  ``rollback``: reverse-order compensation; ``cancellation``: interrupts;
- ``outcomes`` and ``run_ending``: the status, exit code and message of what ended
  the run, and the record's last write.

The shape of a run:

1. ``--resume``: pick the latest run of this runbook on this host; refuse if it
   succeeded, if its process is still alive, or (unless ``--force``) if any input
   digest changed since (``StalePlanError`` listing the changes).
2. Open the host (``opening``). Nothing is recorded before the lock is held: a
   refused run leaves no history. ``--resume`` then runs the ``check`` probes of the
   steps done earlier, and ``resume_plan`` decides what runs again; the run says what
   and why before its first step.
3. Steps in order. Each is rendered at run time by ``planner.render_step`` (the same
   path as ``deployer plan``) with the values captured so far, then gated and
   attempted (``attempts``). The record is saved at every transition; the end of a
   step is written together with the start of the next one, and always before
   anything else reaches the host or the run waits for the operator.
4. A failed step with ``on_failure: rollback`` (the default) triggers
   ``rollback.roll_back`` over the completed steps unless ``--no-rollback``; ``stop``
   ends the run as it is; ``continue`` goes on.
5. Ctrl-C (``KeyboardInterrupt``, or ``cancel()`` from another thread) marks the
   running step ``interrupted`` and rolls back; a second one, while the step is still
   being stopped or during the rollback, abandons the rollback (``cancellation``).
6. ``finally``: the lock is released (kept while a command of the run may still run;
   a lock found gone or taken is reported in the summary), the connection closed, the
   record finalised.

Exit codes: see ``outcomes`` (0 success, 1 rolled back, 3 not rolled back or declined,
130 interrupted).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from deployer import captures as captures_mod
from deployer import outcomes
from deployer.after_failure import AfterFailure
from deployer.attempts import DECLINED, StepAttempts
from deployer.cancellation import AfterInterrupt, Cancellation
from deployer.command_runner import CommandRunner, Interrupted
from deployer.connection import HostConnection
from deployer.errors import DeployerError
from deployer.failure import Failure
from deployer.journal import Journal, LocalJournal
from deployer.models import Host, Runbook, Step
from deployer.opening import HostOpening
from deployer.outcomes import StepStatus
from deployer.perform import Performer
from deployer.remote_guard import RemoteGuard
from deployer.resume_checks import ResumeChecks
from deployer.run_ending import RunEnding
from deployer.run_output import DIAGNOSE_LINES, RunOutput
from deployer.run_rollback import RunRollback
from deployer.run_setup import RunSetup
from deployer.run_start import RunStart
from deployer.run_types import Events, RunOptions, RunOutcome
from deployer.selection import Selection
from deployer.state import RunRecord, StateStore, StepRecord, new_run_id, now_iso, operator
from deployer.step_failure import StepFailures
from deployer.step_render import StepRenderer
from deployer.transport import Transport, TransportFactory

__all__ = ["DIAGNOSE_LINES", "Events", "Executor", "Failure", "RunOptions", "RunOutcome",
           "TransportFactory", "default_transport_factory"]


def default_transport_factory(host: Host, accept_new_host_key: bool,
                              sudo_password: str | None) -> Transport:
    """An ``SSHTransport`` to ``host``, trusting the inventory's extra known_hosts."""
    from deployer.ssh import SSHTransport

    return SSHTransport(host, accept_new_host_key=accept_new_host_key,
                        extra_known_hosts=list(host.known_hosts), sudo_password=sudo_password)


class Executor:
    """Runs one runbook on one host. See the module docstring for the sequence.

    ``journal`` (default: a ``LocalJournal`` over ``store``) is where the run is
    recorded; ``store`` also answers the history questions (the run to resume, the
    captures of earlier runs, the variables' digest key)."""

    def __init__(
        self,
        runbook: Runbook,
        host: Host,
        *,
        variables: dict[str, Any],
        secrets: dict[str, str],
        redactor: Any,
        digests: dict[str, str] | None = None,
        options: RunOptions | None = None,
        events: Events | None = None,
        project_dir: str = ".",
        store: StateStore | None = None,
        transport_factory: TransportFactory | None = None,
        sudo_password: str | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.runbook = runbook
        self.host = host
        # A copy: detection of the compose flavour sets a var for this host only.
        self.variables = copy.copy(variables)
        self._input_variables = copy.copy(variables)  # as given (for the record's digests)
        self.secrets = dict(secrets)
        self.redactor = redactor
        self.digests = dict(digests or {})
        self.options = options or RunOptions()
        self.events = events or Events()
        self.project_dir = project_dir
        self.store = store or StateStore(project_dir)
        self.journal: Journal = journal or LocalJournal(self.store, redactor.mask)
        self.output = RunOutput(host.name, self.journal, self.events, redactor.mask)
        self.selection = Selection()  # resolved from the options by run()/rollback_run()
        self._lock_warning = ""  # the lock vanished or changed hands during the run
        self._wire(transport_factory or default_transport_factory,
                   sudo_password if sudo_password is not None else (
                       self.secrets.get("sudo_password")))

    def _wire(self, factory: TransportFactory, sudo_password: str | None) -> None:
        """The policies the loop runs over, each given what it needs of the run."""
        opts, out, journal = self.options, self.output, self.journal
        self.link = HostConnection(self.host, factory,
                                   accept_new_host_key=opts.accept_new_host_key,
                                   sudo_password=sudo_password)
        self.cancellation = Cancellation(self.link.interrupt)
        cancel = self.cancellation.event
        self.guard = RemoteGuard(self.host.name, journal, connect=self.link.transport,
                                 current=self.link.current_transport, drop=self.link.drop,
                                 notice=out.notice, step=lambda: out.current)
        self.link.on_process = self.guard.announce
        self.setup = RunSetup(self.runbook, self.host, self.store, options=opts.recorded(),
                              force=opts.force, digests=self.digests,
                              variables=self._input_variables, notice=out.notice,
                              mask=self.redactor.mask)
        self.performer = Performer(self.link.transport, out.on_line, self.project_dir, cancel)
        self.renderer = StepRenderer(self.runbook, self.host, self.variables, self.secrets,
                                     self.project_dir)
        self.runner = runner = CommandRunner(self.performer, self.guard, journal, cancel)
        self.attempts = StepAttempts(runner, out, journal, cancel, assume_yes=opts.yes)
        self.failures = StepFailures(self.renderer, runner, out, journal)
        self.rollback = RunRollback(self.renderer, runner, out, journal, cancel)
        self.after_interrupt = AfterInterrupt(self.cancellation, self.guard, out, journal,
                                              self.rollback.roll_back,
                                              no_rollback=opts.no_rollback)
        self.opening = HostOpening(self.runbook, self.host, self.link, self.guard,
                                   self.performer, self.variables, out,
                                   skip_preflight=opts.skip_preflight, force=opts.force)
        self.after_failure = AfterFailure(self.runbook, self.guard, journal,
                                          self.rollback.roll_back, no_rollback=opts.no_rollback)
        self.start = RunStart(self.setup, self.renderer,
                              ResumeChecks(self.setup, self.renderer, runner, out), self.link,
                              self.store, journal, out, variables=self.variables,
                              inputs=self._input_variables)
        self.ending = RunEnding(self.runbook.name, journal, out)

    @property
    def record(self) -> RunRecord | None:
        return self.journal.record

    @record.setter
    def record(self, value: RunRecord | None) -> None:
        self.journal.record = value

    @property
    def captured(self) -> dict[str, str]:
        """The values captured so far (the renderer's, which every room reads)."""
        return self.renderer.captured

    @property
    def notices(self) -> list[str]:
        return self.output.notices

    # -- public ----------------------------------------------------------------------

    def cancel(self, cause: str = "Ctrl-C") -> None:
        """Ask a run on another thread to stop (first call) or to abandon its rollback
        (second call). Thread-safe; takes effect at the next command boundary, and at
        once for local commands, waits and remote commands when the transport can.
        ``cause`` (``Ctrl-C``, ``SIGTERM``) is what the run record names."""
        self.cancellation.cancel(cause)

    def interrupted_by(self, cause: str) -> None:
        """Name what is about to interrupt the run (``SIGTERM``; Ctrl-C by default), for
        the step's message and the record. Called by a signal handler before it raises
        ``KeyboardInterrupt``; a later signal does not rename the first."""
        self.cancellation.name(cause)

    def run(self) -> RunOutcome:
        """Run (or resume) the runbook on the host."""
        opts = self.options
        prev = self.setup.find_resumable() if opts.resume else None
        self.selection = Selection.resolve(self.runbook, opts.from_step, opts.only_step)
        if prev is not None:
            self.start.reuse_values(prev, "resuming")
            self.setup.check_stale(prev, "resume", self.selection)
        if not (opts.yes or self.events.can_confirm()):
            self.start.refuse_unconfirmable(prev, self.selection)
        run_id = prev.id if prev is not None else new_run_id()
        outcome: RunOutcome | None = None
        try:
            self.opening.open(run_id, "run", prev, self.selection)
            self.start.begin(self.start.record(run_id, prev, self.selection))
            self.events.run_started(self._rec, prev is not None)
            self.start.say_resume(run_id)
            try:
                outcome = self._execute(resumed=prev is not None)
            except Exception as exc:
                # A bug or an unexpected error: never leave the record claiming to run.
                self.ending.finalise(self.ending.outcome(outcomes.internal_error(exc)))
                raise
        finally:
            self._close()
        return self._ended(outcome)

    def rollback_run(self, record: RunRecord) -> RunOutcome:
        """Undo the completed steps of a past run (``deployer rollback``)."""
        opts = self.options
        self.selection = Selection.resolve(self.runbook, opts.from_step, opts.only_step)
        self.start.reuse_values(record, "rolling back")
        self.setup.check_stale(record, "roll back", self.selection)
        self.record = record
        self.renderer.use_captures(captures_mod.known_captures(record))
        try:
            self.opening.open(record.id, "rollback", record, self.selection)
            record.pid = os.getpid()
            record.resumes = record.resumes + [{"at": now_iso(), "operator": operator(),
                                                "action": "rollback"}]
            self.start.begin(record)
            self.events.run_started(record, True)
            verdict, report = self.rollback.requested(record)
            outcome = self.ending.finalise(self.ending.outcome(verdict, report=report))
        finally:
            self._close()
        return self._ended(outcome)

    @property
    def _rec(self) -> RunRecord:
        """The run's record (set once the run has begun)."""
        record = self.journal.record
        assert record is not None, "the run has not begun"
        return record

    # -- the steps -------------------------------------------------------------------

    def _execute(self, resumed: bool) -> RunOutcome:
        failure: Failure | None = None
        declined = False
        abandon: bool | None = None  # set: the run was interrupted
        try:
            failure, declined = self._run_steps()
        except (KeyboardInterrupt, Interrupted) as exc:
            abandon = self.cancellation.abandons(exc)
            self.after_interrupt.mark(abandon)
        end = self.ending
        if abandon is not None:
            text, report = self.after_interrupt.settle(abandon)
            return end.finalise(end.outcome(outcomes.interrupted(text), report=report,
                                            resumed=resumed))
        if declined:
            return end.finalise(end.outcome(outcomes.declined(), resumed=resumed))
        if failure is None:
            failed = [s.id for s in self._rec.steps if s.state == StepStatus.FAILED]
            return end.finalise(end.outcome(outcomes.succeeded(failed), resumed=resumed))
        verdict, report = self.after_failure.settle(failure)
        return end.finalise(end.outcome(verdict, failure=failure, report=report,
                                        resumed=resumed))

    def _run_steps(self) -> tuple[Failure | None, bool]:
        """Run the steps not done yet: (the failure that ends the run, declined)."""
        for i, step in enumerate(self.runbook.steps):
            rec = self._rec.steps[i]
            if rec.state in (StepStatus.OK, StepStatus.SKIPPED):
                continue
            self.runner.check_cancel()
            result = self._run_step(step, rec)
            if result == DECLINED:
                return None, True
            if isinstance(result, Failure):
                policy = step.on_failure or self.runbook.on_failure
                if policy == "continue" and self.guard.leftover is None:
                    self.output.notice(f"step {step.id} failed; going on (on_failure: "
                                       "continue)", "warning")
                    continue
                self._rec.failed_step = step.id
                return result, False
        return None, False

    def _run_step(self, step: Step, rec: StepRecord) -> Failure | str:
        """Render, gate and attempt one step; capture its value. The step's final
        state, or its ``Failure``."""
        self.output.start(step.id)
        try:
            planned = self.renderer.render(step, before_capture=True)
        except DeployerError as exc:
            return self.failures.fail(step, rec, None, f"cannot render the step: {exc}")
        rec.irreversible = planned.irreversible
        rec.name = self.redactor.mask(planned.title or step.name)
        gate = self.attempts.gate(step, rec, planned)
        if gate is not None:
            return gate
        result = self.attempts.run(step, rec, planned)
        rec.exit_code = result.exit_code
        if not result.ok:
            return self.failures.fail(step, rec, result.exit_code, result.message,
                                      self.failures.stack_context(step))
        if step.capture:
            value = result.stdout.strip()
            self.captured[step.capture] = value
            masked = self.redactor.mask(value)
            rec.captured = {step.capture: masked}
            rec.captured_masked = [step.capture] if masked != value else []
        rec.state = StepStatus.OK
        rec.finished = now_iso()
        rec.tail = self.output.last_lines()
        self.output.step_done(rec)
        return StepStatus.OK

    # -- after the steps -------------------------------------------------------------

    def _close(self) -> None:
        warning = self.link.release(self.guard.leftover, self.output.notice)
        if warning:
            self._lock_warning = warning
            self.output.notice(warning, "warning")
        # The last host writes were posted: the release's round trip brought their answers.
        self.journal.catch_up()
        self.link.drop()
        self.journal.close()

    def _ended(self, outcome: RunOutcome | None) -> RunOutcome:
        assert outcome is not None
        self.ending.lock_lost(outcome, self._lock_warning)
        self.events.run_finished(outcome)
        return outcome
