"""Performs a runbook on one host: the step loop over the run's policies.

One ``Executor`` runs one runbook on one host and keeps no global state, so a pool
can run many at once (one per host, each with its own connection, lock, record and
rollback). It never prints: everything it has to say goes to an ``Events`` object
(the CLI renders it) and the final ``RunOutcome`` is plain data.

The executor is the loop; each policy it applies lives in its own module:

- ``run_setup``: the run to resume, stale inputs, the record it writes;
- ``connection``: the run's one transport and its host lock;
- ``selection``: which steps ``--from``/``--only`` run;
- ``resume_plan``: whether a ``--resume`` is refused (inputs changed) and what it runs
  again; ``captures``: the captured values a run takes from its record or history;
- ``journal``: where the record and the log are written (the persistence seam);
- ``remote_guard``: a remote command is never left running beside what follows;
- ``rollback``: reverse-order compensation; ``failure``: what a failed step says;
- ``outcomes``: the status, exit code and message of what ended the run.

The shape of a run:

1. ``--resume``: pick the latest run of this runbook on this host; refuse if it
   succeeded, if its process is still alive, or (unless ``--force``) if any input
   digest changed since (``StalePlanError`` listing the changes).
2. Connect (one transport for the whole run, opened lazily), run the cheap preflight,
   take the host lock (``--resume`` takes over the lock its own run left), stop the
   command a killed run left, detect the compose flavour once if a compose step will
   run and ``compose_command`` is unset. Nothing is recorded before the lock is held:
   a refused run leaves no history. ``--resume`` then runs the ``check`` probes of the
   steps done earlier, and ``resume_plan`` decides what runs again; the run says what
   and why before its first step.
3. Steps in order. Each is rendered at run time by ``planner.render_step`` (the same
   path as ``deployer plan``) with the values captured so far; ``when`` false or a
   ``skip_if`` probe exiting 0 skips it; ``confirm`` asks through ``Events.confirm``
   (declining stops the run, nothing is undone, the run stays resumable). Attempts
   repeat up to ``retries`` with ``delay``. The record is saved at every transition;
   the end of a step is written together with the start of the next one, and always
   before anything else reaches the host or the run waits for the operator.
4. A failed step with ``on_failure: rollback`` (the default) triggers
   ``rollback.roll_back`` over the completed steps unless ``--no-rollback``; ``stop``
   ends the run as it is; ``continue`` goes on.
5. Ctrl-C (``KeyboardInterrupt``, or ``cancel()`` from another thread) marks the
   running step ``interrupted`` and rolls back; a second one, while the step is still
   being stopped or during the rollback, abandons the rollback.
6. ``finally``: the lock is released (kept while a command of the run may still run;
   a lock found gone or taken is reported in the summary), the connection closed, the
   record finalised.

Exit codes: see ``outcomes`` (0 success, 1 rolled back, 3 not rolled back or declined,
130 interrupted).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deployer import captures as captures_mod
from deployer import failure as failure_mod
from deployer import outcomes, resume_plan
from deployer import rollback as rollback_mod
from deployer.commands import Command, HttpCheck, LocalCommand, RemoteCommand
from deployer.connection import HostConnection
from deployer.errors import (
    EXIT_OK,
    DeployerError,
    TransportError,
    UsageError,
)
from deployer.failure import Failure
from deployer.journal import Journal, LocalJournal
from deployer.models import Host, Runbook, Step, StepBody
from deployer.perform import Performer, Result
from deployer.remote_guard import RemoteGuard
from deployer.rollback import RollbackReport, StepUndoResult, Undo
from deployer.run_setup import RunSetup
from deployer.selection import Selection
from deployer.state import (
    FAILED,
    INTERRUPTED,
    OK,
    RUNNING,
    SKIPPED,
    TAIL_LINES,
    RunRecord,
    StateStore,
    StepRecord,
    new_run_id,
    now_iso,
    operator,
)
from deployer.transport import StepInterrupted, Transport, TransportFactory

if TYPE_CHECKING:
    from deployer.planner import PlannedStep

DIAGNOSE_LINES = 200  # output lines kept in memory for failure diagnosis

__all__ = ["DIAGNOSE_LINES", "Events", "Executor", "Failure", "RunOptions", "RunOutcome",
           "TransportFactory", "default_transport_factory"]


@dataclass
class RunOptions:
    """Command-line choices that change how a run behaves."""

    yes: bool = False
    resume: bool = False
    force: bool = False
    from_step: str | None = None
    only_step: str | None = None
    no_rollback: bool = False
    accept_new_host_key: bool = False
    skip_preflight: bool = False
    plan_digest: str = ""  # `apply`: the saved plan's digest
    approved: bool = False  # `apply`: that digest was approved (--approve / --approvals)
    approved_by: str = ""  # who approved it (the audit log names them)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunOutcome:
    """The result of one host run (or of ``deployer rollback``), as data."""

    run_id: str
    host: str
    runbook: str
    status: str
    exit_code: int
    message: str
    record: RunRecord
    state_path: str
    log_path: str
    failure: Failure | None = None
    rollback: RollbackReport | None = None
    resumed: bool = False
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


class Events:
    """What an executor reports while it runs. Every method is a no-op here; the CLI
    subclasses it. Lines and messages arrive already masked."""

    def run_started(self, record: RunRecord, resumed: bool) -> None: ...

    def notice(self, host: str, text: str, level: str = "info") -> None: ...

    def step_started(self, host: str, rec: StepRecord, attempt: int,
                     commands: list[str]) -> None: ...

    def output(self, host: str, step_id: str, stream: str, line: str) -> None: ...

    def step_finished(self, host: str, rec: StepRecord) -> None: ...

    def can_confirm(self) -> bool:
        """Whether ``confirm`` can ask anyone (a terminal is attached)."""
        return False

    def confirm(self, host: str, step_id: str, question: str) -> bool:
        return False

    def rollback_started(self, host: str, reason: str, steps: list[str]) -> None: ...

    def undo_started(self, host: str, rec: StepRecord, commands: list[str]) -> None: ...

    def undo_finished(self, host: str, rec: StepRecord, state: str, message: str) -> None: ...

    def run_finished(self, outcome: RunOutcome) -> None: ...


def default_transport_factory(host: Host, accept_new_host_key: bool,
                              sudo_password: str | None) -> Transport:
    from deployer.ssh import SSHTransport

    return SSHTransport(host, accept_new_host_key=accept_new_host_key,
                        extra_known_hosts=list(host.known_hosts), sudo_password=sudo_password)


class _Interrupted(Exception):
    """A step was interrupted (Ctrl-C or cancel()); carries nothing."""


class _ForwardUndo(rollback_mod.RollbackEvents):
    """Passes a rollback's events on to the run's ``Events`` and log."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def undo_started(self, rec: StepRecord, commands: list[Any]) -> None:
        ex = self.executor
        ex.events.undo_started(ex.host.name, rec,
                               [c.display(ex.redactor.mask) for c in commands])

    def undo_finished(self, rec: StepRecord, state: str, message: str) -> None:
        ex = self.executor
        ex.journal.event(f"undo {rec.id}: {state}" + (f" ({message})" if message else ""))
        ex.events.undo_finished(ex.host.name, rec, state, message)


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
        self.captured: dict[str, str] = {}
        self.notices: list[str] = []
        self._current = ""  # step id output lines belong to
        self._quiet = False  # probe output: logged, not shown
        self._tail: deque[str] = deque(maxlen=DIAGNOSE_LINES)
        self._cancel = threading.Event()
        self._cancels = 0
        self._interrupted_by = "Ctrl-C"
        self._interrupt_named = False
        self._lock_warning = ""  # the lock vanished or changed hands during the run
        self._started = time.monotonic()
        self._steps_by_id = {s.id: (i, s) for i, s in enumerate(runbook.steps)}
        self.selection = Selection()  # resolved from the options by run()/rollback_run()
        self._resume: resume_plan.ResumePlan | None = None  # --resume: what runs again
        self._wire(transport_factory or default_transport_factory,
                   sudo_password if sudo_password is not None else (
                       self.secrets.get("sudo_password")))

    def _wire(self, factory: TransportFactory, sudo_password: str | None) -> None:
        """The policies the loop runs over, each given what it needs of the run."""
        self.link = HostConnection(self.host, factory,
                                   accept_new_host_key=self.options.accept_new_host_key,
                                   sudo_password=sudo_password)
        self.guard = RemoteGuard(self.host.name, self.journal, connect=self.link.transport,
                                 current=self.link.current_transport, drop=self.link.drop,
                                 notice=self._notice, step=lambda: self._current)
        self.link.on_process = self.guard.announce
        self.setup = RunSetup(self.runbook, self.host, self.store,
                              options=self._options_recorded(), force=self.options.force,
                              digests=self.digests, variables=self._input_variables,
                              notice=self._notice, mask=self.redactor.mask)
        self.performer = Performer(self.link.transport, self._on_line, self.project_dir,
                                   self._cancel)

    @property
    def record(self) -> RunRecord | None:
        return self.journal.record

    @record.setter
    def record(self, value: RunRecord | None) -> None:
        self.journal.record = value

    # -- public ----------------------------------------------------------------------

    def cancel(self, cause: str = "Ctrl-C") -> None:
        """Ask a run on another thread to stop (first call) or to abandon its rollback
        (second call). Thread-safe; takes effect at the next command boundary, and at
        once for local commands, waits and remote commands when the transport can.
        ``cause`` (``Ctrl-C``, ``SIGTERM``) is what the run record names."""
        self.interrupted_by(cause)
        self._cancels += 1
        self._cancel.set()
        self.link.interrupt()

    def interrupted_by(self, cause: str) -> None:
        """Name what is about to interrupt the run (``SIGTERM``; Ctrl-C by default), for
        the step's message and the record. Called by a signal handler before it raises
        ``KeyboardInterrupt``; a later signal does not rename the first."""
        if not self._interrupt_named:
            self._interrupt_named = True
            self._interrupted_by = cause

    def run(self) -> RunOutcome:
        """Run (or resume) the runbook on the host."""
        opts = self.options
        prev = self.setup.find_resumable() if opts.resume else None
        self.selection = Selection.resolve(self.runbook, opts.from_step, opts.only_step)
        if prev is not None:
            self._reuse_values(prev, "resuming")
            self.setup.check_stale(prev, "resume", self.selection)
        self._check_confirmations(prev)
        run_id = prev.id if prev is not None else new_run_id()
        outcome: RunOutcome | None = None
        try:
            self._open(run_id, "run", prev)
            self._begin(self._build_record(run_id, prev))
            self.events.run_started(self._rec, prev is not None)
            self._say_resume(run_id)
            try:
                outcome = self._execute(resumed=prev is not None)
            except Exception as exc:
                # A bug or an unexpected error: never leave the record claiming to run.
                self._finalise(self._outcome(outcomes.internal_error(exc)))
                raise
        finally:
            self._close()
        return self._ended(outcome)

    def _reuse_values(self, prev: RunRecord, doing: str) -> None:
        """The --var values ``prev`` was given and this invocation is not: used again."""
        reused = self.setup.recorded_cli_values(prev)
        for name, value in reused.items():
            self.variables[name] = value
            self._input_variables[name] = value
        if reused:
            shown = " ".join(f"{k}={v}" for k, v in sorted(reused.items()))
            self._notice(f"{doing} {prev.id} with its --var values: {shown}")

    def rollback_run(self, record: RunRecord) -> RunOutcome:
        """Undo the completed steps of a past run (``deployer rollback``)."""
        opts = self.options
        self.selection = Selection.resolve(self.runbook, opts.from_step, opts.only_step)
        self._reuse_values(record, "rolling back")
        self.setup.check_stale(record, "roll back", self.selection)
        self.record = record
        self.captured = captures_mod.known_captures(record)
        try:
            self._open(record.id, "rollback", record)
            record.pid = os.getpid()
            record.resumes = record.resumes + [{"at": now_iso(), "operator": operator(),
                                                "action": "rollback"}]
            self._begin(record)
            self.events.run_started(record, True)
            outcome = self._finalise(self._requested_rollback(record))
        finally:
            self._close()
        return self._ended(outcome)

    # -- the run ---------------------------------------------------------------------

    @property
    def _rec(self) -> RunRecord:
        """The run's record (set once the run has begun)."""
        record = self.journal.record
        assert record is not None, "the run has not begun"
        return record

    def _begin(self, record: RunRecord) -> None:
        """Start recording: the log's first lines, then the record's first write."""
        header = (f"{record.id} {self.runbook.name} on {self.host.name} by {operator()} "
                  f"(pid {os.getpid()})")
        self.journal.begin(record, header, self.notices)
        self.journal.save()

    def _say_resume(self, run_id: str) -> None:
        for line in self._resume.lines() if self._resume is not None else []:
            self._notice(line)
        took = self.link.took_over
        if took is not None:
            self._notice(f"took over the lock left by run {run_id} ({took.describe()})")

    def _ended(self, outcome: RunOutcome | None) -> RunOutcome:
        assert outcome is not None
        self._warn_lock_lost(outcome)
        self.events.run_finished(outcome)
        return outcome

    def _requested_rollback(self, record: RunRecord) -> RunOutcome:
        if not rollback_mod.undoable(record):
            msg = f"run {record.id} has no completed step to roll back"
            self._notice(msg)
            return self._outcome(outcomes.Verdict(record.status, outcomes.ExitCode.OK, msg))
        try:
            report = self._roll_back(f"requested by {operator()}")
        except KeyboardInterrupt:
            report = None
        verdict = outcomes.requested_rollback(report)
        record.status = verdict.status
        return self._outcome(verdict, report=report)

    def _execute(self, resumed: bool) -> RunOutcome:
        failure: Failure | None = None
        interrupted = declined = abandon = False
        try:
            failure, declined = self._run_steps()
        except (KeyboardInterrupt, _Interrupted) as exc:
            interrupted = True
            # A second Ctrl-C (or cancel()) while the command was still being stopped
            # is the operator's "abandon the rollback", however early it came.
            second = isinstance(exc, StepInterrupted) and exc.second
            abandon = second or self._cancels >= 2
            self._mark_interrupted(abandon)
        if interrupted:
            return self._finalise(self._after_interrupt(resumed, abandon))
        if declined:
            return self._finalise(self._outcome(outcomes.declined(), resumed=resumed))
        if failure is None:
            failed = [s.id for s in self._rec.steps if s.state == FAILED]
            return self._finalise(self._outcome(outcomes.succeeded(failed), resumed=resumed))
        return self._finalise(self._after_failure(failure, resumed))

    def _after_failure(self, failure: Failure, resumed: bool) -> RunOutcome:
        step = self._steps_by_id[failure.step_id][1]
        policy = step.on_failure or self.runbook.on_failure
        done = [s.id for s in self._rec.steps if s.state == OK]
        if self.guard.leftover is not None:
            verdict = outcomes.left_running(failure.step_id, self.guard.leftover.pgid, done)
            return self._outcome(verdict, failure=failure, resumed=resumed)
        if self.options.no_rollback or policy == "stop":
            why = "--no-rollback" if self.options.no_rollback else "on_failure: stop"
            return self._outcome(outcomes.not_rolled_back(failure.step_id, why, done),
                                 failure=failure, resumed=resumed)
        try:
            report = self._roll_back(f"step {failure.step_id} failed")
        except KeyboardInterrupt:
            report = None
        return self._outcome(outcomes.after_rollback(failure.step_id, report),
                             failure=failure, report=report, resumed=resumed)

    def _after_interrupt(self, resumed: bool, abandon: bool = False) -> RunOutcome:
        abandon = abandon or self._cancels >= 2  # a second cancel() while stopping
        self._cancel.clear()
        proc = self.guard.running()
        if proc is not None and not abandon and not self.options.no_rollback:
            # The group outlived the transport's wait: never undo beside it.
            try:
                gone, why = self.guard.stop(proc, f"the command of step {self._current}")
            except KeyboardInterrupt:
                gone, why, abandon = False, "", True
            if not gone and not abandon:
                self.guard.leftover = proc
                text = (f"interrupted; not rolled back: the remote command may still be "
                        f"running (process group {proc.pgid}): {why}; the lock is kept")
                return self._outcome(outcomes.interrupted(text), resumed=resumed)
        text, report = self._interrupt_rollback(abandon)
        return self._outcome(outcomes.interrupted(text), report=report, resumed=resumed)

    def _interrupt_rollback(self, abandon: bool) -> tuple[str, RollbackReport | None]:
        """The rollback after an interrupt (unless --no-rollback or abandoned), and the
        sentence the outcome says about it."""
        record = self._rec
        if self.options.no_rollback:
            return "interrupted; not rolled back (--no-rollback); resume with --resume", None
        if abandon:
            # The rollback never starts: same outcome as abandoning it at its first undo.
            report = RollbackReport(abandoned=True, reason="interrupted",
                                    remaining=[r.id for r in record.steps if r.state == OK],
                                    partial=rollback_mod.partial_steps(record))
            record.rollback = report.to_dict()
            return (f"interrupted; rollback abandoned (a second {self._interrupted_by} came "
                    f"while the step was being stopped); still applied: "
                    f"{', '.join(report.remaining) or 'none'}; the run can be resumed with "
                    "--resume"), report
        self._notice(f"interrupted ({self._interrupted_by}): rolling back the completed "
                     "steps (Ctrl-C again to abandon the rollback and leave the run "
                     "resumable)", "warning")
        try:
            done: RollbackReport | None = self._roll_back("interrupted")
        except KeyboardInterrupt:
            done = None
        if done is None or done.abandoned:
            return "interrupted; rollback abandoned; the run can be resumed with --resume", done
        return f"interrupted; {done.host_state()}", done

    def _mark_interrupted(self, abandoned: bool = False) -> None:
        self._interrupt_named = True
        # The transport forgets a command once its whole process group is gone; one
        # it still names was not (yet) seen to stop.
        proc = self.guard.interrupted()
        by = self._interrupted_by
        if proc is None:
            how = "the remote command was stopped"
        else:
            how = (f"the remote command (process group {proc.pgid}) was sent TERM and had "
                   f"not ended when {'a second ' + by if abandoned else 'deployer'} stopped "
                   f"waiting; it gets KILL {self.guard.grace():g}s after the TERM; "
                   "--resume makes sure it is gone")
        for rec in self._rec.steps:
            if rec.state == RUNNING:
                rec.state = INTERRUPTED
                rec.message = f"interrupted ({by}); {how}"
                rec.finished = now_iso()
                rec.tail = list(self._tail)[-TAIL_LINES:]
                self._step_done(rec)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Interrupted

    def _run_steps(self) -> tuple[Failure | None, bool]:
        for i, step in enumerate(self.runbook.steps):
            rec = self._rec.steps[i]
            if rec.state in (OK, SKIPPED):
                continue
            self._check_cancel()
            result = self._run_step(i, step, rec)
            if result == "declined":
                return None, True
            if isinstance(result, Failure):
                policy = step.on_failure or self.runbook.on_failure
                if policy == "continue" and self.guard.leftover is None:
                    self._notice(f"step {step.id} failed; going on (on_failure: continue)",
                                 "warning")
                    continue
                self._rec.failed_step = step.id
                return result, False
        return None, False

    def _context(self, step: Step, before_capture: bool = False) -> Any:
        from deployer.templating import captured_placeholder, make_context

        captured = self.captured
        if before_capture and step.capture and step.capture not in captured:
            # The step's own rollback may name the value it is about to capture; the
            # undo is rendered again, with the real value, when it runs.
            captured = {**captured, step.capture: captured_placeholder(step.capture)}
        return make_context(self.runbook, self.host, self.variables, self.secrets,
                            captured, step=step, planning=False,
                            project_dir=self.project_dir)

    def _run_step(self, index: int, step: Step, rec: StepRecord) -> Failure | str:
        from deployer.planner import render_step

        self._current = step.id
        self._tail.clear()
        try:
            planned = render_step(step, index + 1, self._context(step, before_capture=True))
        except DeployerError as exc:
            return self._fail(step, rec, None, f"cannot render the step: {exc}")
        rec.irreversible = planned.irreversible
        rec.name = self.redactor.mask(planned.title or step.name)
        gate = self._gate(step, rec, planned)
        if gate is not None:
            return gate
        result = self._attempts(step, rec, planned)
        rec.exit_code = result.exit_code
        if not result.ok:
            return self._fail(step, rec, result.exit_code, result.message,
                              self._stack_context(step))
        if step.capture:
            value = result.stdout.strip()
            self.captured[step.capture] = value
            masked = self.redactor.mask(value)
            rec.captured = {step.capture: masked}
            rec.captured_masked = [step.capture] if masked != value else []
        rec.state = OK
        rec.finished = now_iso()
        rec.tail = list(self._tail)[-TAIL_LINES:]
        self._step_done(rec)
        return OK

    def _gate(self, step: Step, rec: StepRecord, planned: PlannedStep) -> str | None:
        """What stops a step before it runs: ``when`` false or ``skip_if`` (skipped), a
        declined confirmation ("declined"); ``None`` to run it."""
        if planned.skipped:
            return self._finish_skipped(rec, planned.skip_reason)
        if planned.skip_if is not None:
            probe = self._probe(planned.skip_if)
            if probe is not None and probe.ok:
                return self._finish_skipped(rec, "already done (skip_if succeeded)")
        if planned.confirm_question and not self.options.yes:
            self.journal.flush()  # the operator may take a while to answer
            if not self.events.confirm(self.host.name, step.id,
                                       self.redactor.mask(planned.confirm_question)):
                rec.message = "confirmation declined"
                self.journal.save()
                self._notice(f"step {step.id}: confirmation declined; stopping", "warning")
                return "declined"
        return None

    def _attempts(self, step: Step, rec: StepRecord, planned: PlannedStep) -> Result:
        """Perform the step's commands, up to ``retries`` more times with ``delay``."""
        displays = [c.display(self.redactor.mask) for c in planned.commands]
        rec.state, rec.started, rec.exit_code, rec.message = RUNNING, now_iso(), None, ""
        start = time.monotonic()
        result = Result(exit_code=None)
        attempts = step.retries + 1
        for attempt in range(1, attempts + 1):
            rec.attempts = attempt
            self.journal.event(f"step {step.id} started" + (
                f" (attempt {attempt}/{attempts})" if attempt > 1 else ""))
            self.journal.save()
            self.events.step_started(self.host.name, rec, attempt, displays)
            self._tail.clear()  # the failure report shows the last attempt
            result = self._perform_all(planned.commands, step.body.timeout)
            if result.ok or self.guard.leftover is not None:
                break
            if attempt < attempts:
                self._notice(f"step {step.id}: attempt {attempt}/{attempts} failed "
                             f"({self.redactor.mask(result.message)}); retrying"
                             + (f" in {step.delay:g}s" if step.delay else ""), "warning")
                if step.delay and self._cancel.wait(step.delay):
                    raise _Interrupted
                self._check_cancel()
        rec.duration = round(time.monotonic() - start, 3)
        return result

    def _probe(self, probe: RemoteCommand) -> Result | None:
        self._quiet = True
        try:
            result = self._perform_all([probe], probe.timeout)
        finally:
            self._quiet = False
        if result.timed_out:
            self._notice(f"step {self._current}: skip_if probe timed out; running the step",
                         "warning")
        return result

    def _perform_all(self, commands: list[Command], timeout: float | None) -> Result:
        """Perform commands in order; stop at the first failure. The result's stdout is
        that of the last command (what ``capture`` takes)."""
        last = Result(exit_code=0)
        self.journal.flush()  # the record is current before anything touches the host
        for cmd in commands:
            self._check_cancel()
            try:
                result = self._perform_guarded(cmd, timeout)
            except TransportError as exc:
                return Result(exit_code=None, message=self.guard.connection_lost(exc))
            if result.interrupted:
                raise _Interrupted
            if not result.ok:
                return result
            if isinstance(cmd, (RemoteCommand, LocalCommand, HttpCheck)):
                last = result
        return Result(exit_code=0, stdout=last.stdout)

    def _perform_guarded(self, cmd: Command, timeout: float | None) -> Result:
        """One command, its process group watched by the guard while it runs."""
        self.guard.in_command = True
        try:
            result = self.performer.perform(cmd, timeout)
        finally:
            self.guard.in_command = False  # what runs next (stopping it) is no step
        if not result.ok and not result.interrupted:
            result.message = self.guard.unfinished(result.message)
        self.guard.ended()
        return result

    def _finish_skipped(self, rec: StepRecord, reason: str) -> str:
        rec.state = SKIPPED
        rec.message = self.redactor.mask(reason)
        rec.finished = now_iso()
        self._step_done(rec)
        return SKIPPED

    def _fail(self, step: Step, rec: StepRecord, exit_code: int | None,
              message: str, context: list[str] | None = None) -> Failure:
        rec.state = FAILED
        rec.exit_code = exit_code
        rec.message = self.redactor.mask(message or "failed")
        rec.finished = now_iso()
        rec.tail = list(self._tail)[-TAIL_LINES:]
        self._step_done(rec)
        before = [s.id for s in self._rec.steps if s.state in (OK, SKIPPED)]
        failure = failure_mod.describe(step, rec.name, exit_code, rec.message,
                                       list(self._tail), context or [], before,
                                       self.variables, self.redactor.mask)
        # States of deployer's own making (a resume that kept undone steps) come first:
        # they explain the failure better than any pattern in its output.
        failure.diagnoses = failure_mod.run_state(self._rec, step.id,
                                                  self.redactor.mask) + failure.diagnoses
        return failure

    def _stack_context(self, step: Step) -> list[str]:
        """After a compose/wait/http step failed: the stack's `compose ps` and the last
        log lines of services that exited, restart or are unhealthy (run quietly, into
        the run log; deployer.diagnose.context builds the command). Never raises."""
        from deployer.planner import uses_compose

        if self.guard.leftover is not None or step.kind not in ("compose", "wait", "http"):
            return []
        compose_steps = [s for s in self.runbook.steps if uses_compose(s)]
        if step.kind != "compose" and not compose_steps:
            return []
        saved = list(self._tail)
        try:
            from deployer.diagnose.context import stack_probe

            sudo = None if step.kind == "compose" else any(s.body.sudo for s in compose_steps)
            probe = stack_probe(step, self._context(step), sudo=sudo)
            if probe is None:
                return []
            self.journal.event(f"step {step.id} failed: collecting the stack's state")
            self._tail.clear()
            self._quiet = True
            self._perform_all([probe], probe.timeout)
            return list(self._tail)
        except Exception:  # noqa: BLE001 - context must never hide the failure itself
            return []
        finally:
            self._quiet = False
            self._tail.clear()
            self._tail.extend(saved)

    # -- rollback --------------------------------------------------------------------

    def _roll_back(self, reason: str) -> RollbackReport:
        self.journal.flush()
        self._cancel.clear()
        todo = [r.id for r in rollback_mod.targets(self._rec)]
        self.events.rollback_started(self.host.name, reason, todo)
        self.journal.event(f"rollback ({reason}): {', '.join(todo) or 'nothing to undo'}")
        return rollback_mod.roll_back(self._rec, self._render_undo, self._perform_undo,
                                      self.journal.save, _ForwardUndo(self), reason)

    def _render_undo(self, rec: StepRecord) -> Undo:
        from deployer.planner import render_step

        found = self._steps_by_id.get(rec.id)
        if found is None:
            return Undo(commands=[], error=f"step {rec.id} is no longer in the runbook")
        index, step = found
        try:
            planned = render_step(step, index + 1, self._context(step), render_skipped=True)
        except DeployerError as exc:
            return Undo(commands=[], error=self.redactor.mask(f"cannot render the rollback: "
                                                              f"{exc}"))
        return Undo(commands=list(planned.rollback or []), irreversible=planned.irreversible)

    def _perform_undo(self, rec: StepRecord, commands: list[Any]) -> StepUndoResult:
        found = self._steps_by_id.get(rec.id)
        timeout = None
        if found is not None:
            step = found[1]
            body = step.rollback if isinstance(step.rollback, StepBody) else step.body
            timeout = body.timeout or step.body.timeout
        self._current = f"{rec.id}:rollback"
        self._tail.clear()
        try:
            result = self._perform_all(commands, timeout)
        except _Interrupted:
            return StepUndoResult(ok=False, message="interrupted", interrupted=True,
                                  tail=list(self._tail)[-TAIL_LINES:])
        return StepUndoResult(ok=result.ok, exit_code=result.exit_code,
                              message=self.redactor.mask(result.message),
                              tail=list(self._tail)[-TAIL_LINES:])

    # -- outcome ---------------------------------------------------------------------

    def _outcome(self, verdict: outcomes.Verdict, failure: Failure | None = None,
                 report: RollbackReport | None = None, resumed: bool = False) -> RunOutcome:
        record = self._rec
        return RunOutcome(
            run_id=record.id, host=self.host.name, runbook=self.runbook.name,
            status=verdict.status, exit_code=int(verdict.exit_code),
            message=self.redactor.mask(verdict.message), record=record,
            state_path=self.journal.state_path(record.id),
            log_path=self.journal.log_path(record.id), failure=failure,
            rollback=report, resumed=resumed, notices=list(self.notices))

    def _finalise(self, outcome: RunOutcome) -> RunOutcome:
        record = outcome.record
        record.status = outcome.status
        record.exit_code = outcome.exit_code
        record.message = outcome.message
        record.finished = now_iso()
        record.duration = round((record.duration or 0.0) + time.monotonic() - self._started, 3)
        if outcome.failure is not None:
            record.failed_step = outcome.failure.step_id
        self.journal.event(f"{record.status}: {outcome.message}")
        self.journal.save()
        return outcome

    # -- preparation -----------------------------------------------------------------

    def _check_confirmations(self, prev: RunRecord | None) -> None:
        if self.options.yes or self.events.can_confirm():
            return
        asking = self.setup.unconfirmable(prev, self.selection, self._may_run)
        if asking:
            raise UsageError(f"step {asking[0]} asks for confirmation and there is no "
                             "terminal to ask", hint="run it from a terminal, or pass --yes "
                             "after reviewing `deployer plan`")

    def _may_run(self, step: Step) -> bool:
        """False only when the step's `when` is already known to be false on this host
        (as the plan shows it skipped); a `when` on a value not captured yet may be true."""
        if step.when is None:
            return True
        from deployer.planner import decide_when
        from deployer.templating import make_context

        ctx = make_context(self.runbook, self.host, self.variables, self.secrets,
                           self.captured, step=step, planning=True,
                           project_dir=self.project_dir)
        try:
            return not decide_when(step, ctx)[0]
        except DeployerError:
            return True

    def _needs_connection(self) -> bool:
        """Connect up front (so a bad host fails before anything runs) unless every step
        runs locally and no lock is taken; otherwise the connection opens on first use."""
        if self.runbook.lock:
            return True
        return any(s.kind != "local" or s.skip_if for s in self.runbook.steps)

    def _open(self, run_id: str, purpose: str, prev: RunRecord | None) -> None:
        """Connect, preflight, lock, stop what ``prev`` left running, detect compose.
        Raises before anything is recorded."""
        if self._needs_connection():
            self.link.transport()
            if self.runbook.lock:
                # Taken before the read-only preflight, in the same round trip.
                self.link.post_lock(self.variables, run_id, self.runbook.name, purpose)
            if not self.options.skip_preflight and purpose == "run":
                self._preflight()
        if self.runbook.lock:
            self.link.take_lock(self.variables, run_id, self.runbook.name, purpose,
                                takeover_run_id=prev.id if prev is not None else None)
        if prev is not None and prev.remote_process:
            self.guard.stop_recorded(prev, self.options.force)
        # a rollback runs compose too (built-in image restore, explicit undo bodies)
        self._detect_compose()

    def _preflight(self) -> None:
        from deployer.diagnose.doctor import cheap_preflight
        from deployer.errors import InputError

        problems = cheap_preflight(self.runbook, self.host, self.link.transport(),
                                   variables=self.variables)
        failed = [p for p in problems if p.severity == "error"]
        for p in problems:
            if p not in failed:
                self._notice(f"preflight: {p}", "warning")
        if failed:
            hint = "fix the host, or skip these checks with --skip-preflight"
            # A Check is Problem-shaped (severity, str()): what InputError shows.
            raise InputError(list(failed), hint=hint)  # type: ignore[arg-type]

    def _detect_compose(self) -> None:
        from deployer.facts import needed, resolve

        steps = (s for i, s in enumerate(self.runbook.steps) if self.selection.selected(i))
        resolve(self.performer, needed(steps, self.variables), self.variables, self.host.name,
                notice=self._notice)

    def _build_record(self, run_id: str, prev: RunRecord | None) -> RunRecord:
        old = {s.id: s for s in prev.steps} if prev is not None else {}
        if prev is not None:
            record = self.setup.resumed_record(prev, self.link.took_over is not None)
            self._resume = self._plan_resume(prev, old)
            if self._resume.again():
                record.resumes[-1]["runs_again"] = self._resume.again()
        else:
            record = self.setup.new_record(run_id)
        reruns = self._resume.reruns if self._resume is not None else None
        record.steps = [self.setup.step_record(i, step, old.get(step.id), reruns, self.selection)
                        for i, step in enumerate(self.runbook.steps)]
        self.captured = captures_mod.known_captures(record)
        found = captures_mod.backfill(
            self.runbook.steps, record.steps, self.selection.start, self.selection.selected,
            known=lambda name: name in self.captured or name in self.variables,
            history=lambda: self.store.list_runs(host=self.host.name,
                                                 runbook=self.runbook.name),
            project_dir=self.project_dir, notice=self._notice)
        self.captured.update(found)
        return record

    def _plan_resume(self, prev: RunRecord,
                     old: dict[str, StepRecord]) -> resume_plan.ResumePlan:
        """Decide what the resume runs again: run the checks of the steps done earlier
        (in order, up to the first that fails), then ask ``resume_plan``."""
        past = self.setup.past(prev, self.selection)
        results: dict[str, resume_plan.CheckOutcome] = {}
        probes = resume_plan.checks_to_probe(past)
        if probes:
            self.captured = captures_mod.known_captures(prev)  # checks may name captures
        for step_id in probes:
            results[step_id] = self._run_check(step_id)
            if not results[step_id].passed:
                break  # every later step runs again anyway
        return resume_plan.plan_resume(past, results)

    def _run_check(self, step_id: str) -> resume_plan.CheckOutcome:
        """Run a done step's ``check`` on the host (read-only, output kept out of the
        progress like a ``skip_if`` probe's). Anything but exit 0 counts as failed:
        a step whose effect cannot be confirmed runs again."""
        from deployer.planner import render_step

        index, step = self._steps_by_id[step_id]
        self._current = f"{step.id}:check"
        self._tail.clear()
        try:
            planned = render_step(step, index + 1, self._context(step))
        except DeployerError as exc:
            return resume_plan.CheckOutcome(False, self.redactor.mask(
                f"cannot render it: {exc}"))
        if planned.check is None:
            return resume_plan.CheckOutcome(False, f"its when is now false: "
                                                   f"{self.redactor.mask(planned.skip_reason)}")
        self._quiet = True
        try:
            result = self._perform_all([planned.check], planned.check.timeout)
        except _Interrupted:
            raise KeyboardInterrupt from None  # nothing of this resume is recorded yet
        finally:
            self._quiet = False
        if result.ok:
            return resume_plan.CheckOutcome(True)
        return resume_plan.CheckOutcome(False, self._check_detail(result))

    def _check_detail(self, result: Result) -> str:
        if result.timed_out:
            detail = "timed out"
        elif result.exit_code is not None:
            detail = f"exit {result.exit_code}"
        else:
            detail = self.redactor.mask(result.message) or "it did not run"
        last = next((line for line in reversed(self._tail) if line.strip()), "")
        if last:
            detail += f": {last.strip()[:200]}"  # already masked (``_on_line``)
        return detail

    # -- transport, lock, reporting --------------------------------------------------

    def _options_recorded(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.to_dict().items() if v}

    def _step_done(self, rec: StepRecord) -> None:
        """Record a step's final state and tell the log and the events about it. The
        write itself goes out with the next transition (``Journal.step_ended``)."""
        detail = f" (exit {rec.exit_code})" if rec.state == FAILED else ""
        self.journal.event(f"step {rec.id} {rec.state}{detail}"
                           + (f": {rec.message}" if rec.message else ""))
        self.journal.step_ended()
        self.events.step_finished(self.host.name, rec)

    def _notice(self, text: str, level: str = "info") -> None:
        text = self.redactor.mask(text)
        self.notices.append(text)
        self.journal.event(text)
        self.events.notice(self.host.name, text, level)

    def _on_line(self, stream: str, line: str) -> None:
        masked = self.redactor.mask(line)
        self._tail.append(masked)
        self.journal.output(self.host.name, self._current, stream, masked)
        if not self._quiet:
            self.events.output(self.host.name, self._current, stream, masked)

    def _close(self) -> None:
        warning = self.link.release(self.guard.leftover, self._notice)
        if warning:
            self._lock_warning = warning
            self._notice(warning, "warning")
        # The last host writes were posted: the release's round trip brought their answers.
        self.journal.catch_up()
        self.link.drop()
        self.journal.close()

    def _warn_lock_lost(self, outcome: RunOutcome) -> None:
        """Put a lock lost during the run into the summary and the record."""
        if not self._lock_warning:
            return
        outcome.message = f"{outcome.message}; WARNING: {self._lock_warning}"
        outcome.notices = list(self.notices)
        outcome.record.message = outcome.message
        self.journal.save()


