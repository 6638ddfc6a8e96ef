"""Performs a runbook on one host: checkpoints, retries, capture, skip_if, confirm,
rollback, locking, interruption and resume.

One ``Executor`` runs one runbook on one host and keeps no global state, so a pool
can run many at once (one per host, each with its own connection, lock, record and
rollback). It never prints: everything it has to say goes to an ``Events`` object
(the CLI renders it) and the final ``RunOutcome`` is plain data.

The shape of a run:

1. ``--resume``: pick the latest run of this runbook on this host; refuse if it
   succeeded, if its process is still alive, or (unless ``--force``) if any input
   digest changed since (``StalePlanError`` listing the changes).
2. Connect (one transport for the whole run, opened lazily), run the cheap preflight,
   take the host lock (``--resume`` takes over the lock its own run left), detect the
   compose flavour once if a compose step will run and ``compose_command`` is unset.
   Nothing is recorded before the lock is held: a refused run leaves no history.
   ``--resume`` then runs the ``check`` probes of the steps done earlier, and
   ``resume_plan`` decides what runs again (a step that runs again makes every later
   one run again); the run says what and why before its first step.
3. Steps in order. Each is rendered at run time by ``planner.render_step`` (the same
   path as ``deployer plan``) with the values captured so far; ``when`` false or a
   ``skip_if`` probe exiting 0 skips it; ``confirm`` asks through ``Events.confirm``
   (declining stops the run, nothing is undone, the run stays resumable). Attempts
   repeat up to ``retries`` with ``delay``. The record is saved at every transition;
   the end of a step is written together with the start of the next one (one atomic
   write instead of two: nothing reaches the host in between), and always before
   anything else does (a command, a ``skip_if`` probe, an undo) or the run waits for
   the operator (``confirm``).
4. A failed step with ``on_failure: rollback`` (the default) triggers
   ``rollback.roll_back`` over the completed steps unless ``--no-rollback``; ``stop``
   ends the run as it is; ``continue`` goes on.
5. Ctrl-C (``KeyboardInterrupt``, or ``cancel()`` from another thread) marks the
   running step ``interrupted`` and rolls back; a second one, while the step is still
   being stopped or during the rollback, abandons the rollback.
6. ``finally``: the lock is released (and a lock found gone or taken is reported in
   the summary), the connection closed, the record finalised.

A remote command is never left running beside what follows it: its process group is
recorded (``record.remote_process``) once it has run a moment; after a lost connection
the executor reconnects and stops it before any retry or rollback, and ``--resume``
stops the one a killed deployer left. If that cannot be done, nothing more runs on the
host and the lock is kept (``_leftover``).

Exit codes (what ended the forward run decides): 0 success; 1 a step failed and the
rollback completed; 3 a step failed and the rollback did not complete (not run,
irreversible, failed, or abandoned with Ctrl-C), or the operator declined a
confirmation; 130 interrupted during a step, whatever the rollback did.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployer import resume_plan
from deployer import rollback as rollback_mod
from deployer.commands import Command, HttpCheck, LocalCommand, RemoteCommand
from deployer.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    DeployerError,
    LockHeldError,
    StalePlanError,
    TransportError,
    UsageError,
)
from deployer.lock import HostLock, lock_path
from deployer.models import Host, Runbook, Step, StepBody
from deployer.perform import Performer, Result
from deployer.rollback import RollbackReport, StepUndoResult, Undo
from deployer.state import (
    FAILED,
    INTERRUPTED,
    OK,
    PENDING,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_ROLLBACK_INCOMPLETE,
    RUN_ROLLED_BACK,
    RUN_RUNNING,
    RUN_STOPPED,
    RUN_SUCCEEDED,
    RUNNING,
    SKIPPED,
    TAIL_LINES,
    RunLog,
    RunRecord,
    StateStore,
    StepRecord,
    deployer_alive,
    new_run_id,
    now_iso,
    operator,
)

DIAGNOSE_LINES = 200  # output lines kept in memory for failure diagnosis

_NOT_SELECTED_FROM = "before --from {step}"
_NOT_SELECTED_ONLY = "not selected (--only {step})"


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Failure:
    """The step that failed a run, with what the operator needs to fix it."""

    step_id: str
    step_name: str
    kind: str
    exit_code: int | None
    message: str  # masked
    tail: list[str]  # masked
    diagnoses: list[dict[str, Any]] = field(default_factory=list)  # id/title/cause/fix
    summary: list[str] = field(default_factory=list)  # masked; when nothing was diagnosed
    context: list[str] = field(default_factory=list)  # masked stack state (compose ps, logs)


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


TransportFactory = Callable[[Host, bool, "str | None"], Any]


def default_transport_factory(host: Host, accept_new_host_key: bool,
                              sudo_password: str | None) -> Any:
    from deployer.transport import SSHTransport

    return SSHTransport(host, accept_new_host_key=accept_new_host_key,
                        extra_known_hosts=list(host.known_hosts), sudo_password=sudo_password)


class _Interrupted(Exception):
    """A step was interrupted (Ctrl-C or cancel()); carries nothing."""


class Executor:
    """Runs one runbook on one host. See the module docstring for the sequence."""

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
        self._factory = transport_factory or default_transport_factory
        self._sudo_password = sudo_password if sudo_password is not None else (
            self.secrets.get("sudo_password"))
        self._transport: Any = None
        self._lock: HostLock | None = None
        self._log: RunLog | None = None
        self.record: RunRecord | None = None
        self.captured: dict[str, str] = {}
        self.notices: list[str] = []
        self._current = ""  # step id output lines belong to
        self._quiet = False  # probe output: logged, not shown
        self._tail: deque[str] = deque(maxlen=DIAGNOSE_LINES)
        self._unsaved = False  # a step ended; its state goes out with the next write
        self._cancel = threading.Event()
        self._cancels = 0
        self._interrupted_by = "Ctrl-C"
        self._interrupt_named = False
        # A remote command that may still run after a lost connection (it could not be
        # stopped): no retry, no rollback, and the lock is kept while it might.
        self._leftover: Any = None  # transport.RemoteProcess
        self._lock_warning = ""  # the lock vanished or changed hands during the run
        self._in_command = False  # a step's (or undo's) command is being performed
        self._started = time.monotonic()
        self._steps_by_id = {s.id: (i, s) for i, s in enumerate(runbook.steps)}
        self._resume: resume_plan.ResumePlan | None = None  # --resume: what runs again
        self.performer = Performer(self._get_transport, self._on_line, project_dir,
                                   self._cancel)

    # -- public ----------------------------------------------------------------------

    def cancel(self, cause: str = "Ctrl-C") -> None:
        """Ask a run on another thread to stop (first call) or to abandon its rollback
        (second call). Thread-safe; takes effect at the next command boundary, and at
        once for local commands, waits and remote commands when the transport can.
        ``cause`` (``Ctrl-C``, ``SIGTERM``) is what the run record names."""
        self.interrupted_by(cause)
        self._cancels += 1
        self._cancel.set()
        transport = self._transport
        if transport is not None and hasattr(transport, "interrupt"):
            try:
                transport.interrupt()
            except Exception:  # noqa: BLE001 - best effort from another thread
                pass

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
        prev = self._find_resumable() if opts.resume else None
        if prev is not None:
            self._check_stale(prev, "resume")
        self._check_selection()
        self._check_confirmations(prev)
        run_id = prev.id if prev is not None else new_run_id()
        outcome: RunOutcome | None = None
        try:
            self._open(run_id, "run", prev)
            self.record = self._build_record(run_id, prev)
            self._start_log()
            self._save()
            self.events.run_started(self.record, prev is not None)
            for line in self._resume.lines() if self._resume is not None else []:
                self._notice(line)
            took = self._lock.took_over if self._lock else None
            if took is not None:
                self._notice(f"took over the lock left by run {run_id} ({took.describe()})")
            try:
                outcome = self._execute(resumed=prev is not None)
            except Exception as exc:
                # A bug or an unexpected error: never leave the record claiming to run.
                self._finalise(self._outcome(RUN_FAILED, EXIT_FAILED,
                                             f"aborted by an internal error: "
                                             f"{type(exc).__name__}: {exc}"))
                raise
        finally:
            self._close()
        self._warn_lock_lost(outcome)
        self.events.run_finished(outcome)
        return outcome

    def rollback_run(self, record: RunRecord) -> RunOutcome:
        """Undo the completed steps of a past run (``deployer rollback``)."""
        self._check_stale(record, "roll back")
        self.record = record
        self.captured = _known_captures(record)
        try:
            self._open(record.id, "rollback", record)
            self._start_log()
            record.pid = os.getpid()
            record.resumes = record.resumes + [{"at": now_iso(), "operator": operator(),
                                                "action": "rollback"}]
            self._save()
            self.events.run_started(record, True)
            todo = rollback_mod.undoable(record)
            if not todo:
                msg = f"run {record.id} has no completed step to roll back"
                self._notice(msg)
                outcome = self._outcome(record.status, EXIT_OK, msg)
            else:
                try:
                    report = self._roll_back(f"requested by {operator()}")
                except KeyboardInterrupt:
                    report = None
                if report is None or report.abandoned:
                    record.status = RUN_ROLLBACK_INCOMPLETE
                    outcome = self._outcome(RUN_ROLLBACK_INCOMPLETE, EXIT_INTERRUPTED,
                                            "rollback interrupted", report=report)
                elif report.complete:
                    record.status = RUN_ROLLED_BACK
                    outcome = self._outcome(RUN_ROLLED_BACK, EXIT_OK, report.host_state(),
                                            report=report)
                else:
                    record.status = RUN_ROLLBACK_INCOMPLETE
                    outcome = self._outcome(RUN_ROLLBACK_INCOMPLETE, EXIT_FAILED,
                                            report.host_state(), report=report)
            self._finalise(outcome)
        finally:
            self._close()
        self._warn_lock_lost(outcome)
        self.events.run_finished(outcome)
        return outcome

    # -- preparation -----------------------------------------------------------------

    def _find_resumable(self) -> RunRecord:
        prev = self.store.latest(self.runbook.name, self.host.name)
        name, host = self.runbook.name, self.host.name
        if prev is None:
            raise UsageError(f"no run of {name} on {host} to resume",
                             hint=f"start one with: deployer run {name} --host {host}")
        if prev.status == RUN_SUCCEEDED:
            raise UsageError(f"the latest run of {name} on {host} ({prev.id}) succeeded; "
                             "there is nothing to resume",
                             hint="run without --resume to deploy again")
        machine = prev.operator.rpartition("@")[2]
        if (prev.status == RUN_RUNNING and machine == operator().rpartition("@")[2]
                and prev.pid != os.getpid() and deployer_alive(prev.pid)):
            raise LockHeldError(f"run {prev.id} is still running (pid {prev.pid} on this "
                                "machine)", holder={"run_id": prev.id, "pid": prev.pid},
                                hint="wait for it, or stop it with Ctrl-C in its terminal")
        return prev

    def _variable_digests(self) -> tuple[dict[str, str], str]:
        """Keyed digests of this run's variables (see ``state.variable_digests``) and
        the key's id. Names that steps capture are left out: on a later --from they
        may come from --var, standing in for the step that did not run again."""
        from deployer.state import key_id, variable_digests

        captures = {s.capture for s in self.runbook.steps if s.capture}
        key = self.store.digest_key()
        values = {k: v for k, v in self._input_variables.items() if k not in captures}
        return variable_digests(values, key), key_id(key)

    def _variable_changes(self, prev: RunRecord) -> list[str]:
        """Names whose values differ from ``prev``'s (never the values)."""
        if not prev.variables:
            return []  # recorded before variables were
        current, kid = self._variable_digests()
        if prev.variables_key and prev.variables_key != kid:
            self._notice(f"variables cannot be compared with run {prev.id}: the key "
                         f"{self.store.root / '.key'} changed since", "warning")
            return []
        cli = getattr(self._input_variables, "cli_keys", frozenset())
        changes = []
        for name in sorted(set(prev.variables) | set(current)):
            where = " (--var)" if name in cli else ""
            if name not in current:
                changes.append(f"variable {name} is no longer set")
            elif name not in prev.variables:
                changes.append(f"variable {name}{where} is new")
            elif prev.variables[name] != current[name]:
                changes.append(f"variable {name}{where} changed")
        return changes

    def _check_stale(self, prev: RunRecord, action: str) -> None:
        from deployer.planner import stale_changes

        changes = []
        if prev.digests and self.digests:
            changes = stale_changes(prev.digests, self.digests)
            if changes:
                changes += self._step_changes(prev)
        changes += self._variable_changes(prev)
        if not changes:
            return
        if self.options.force:
            self._notice(f"inputs changed since run {prev.id} ({'; '.join(changes)}); "
                         "going on (--force)", "warning")
            return
        raise StalePlanError(
            f"refusing to {action} run {prev.id}: its inputs changed since", changes,
            hint=("review the change with `deployer plan` (a changed variable: pass the same "
                  "--var values as that run); then start a new run, or add --force to use "
                  "the new inputs anyway"))

    def _step_changes(self, prev: RunRecord) -> list[str]:
        """Which steps the changed files changed, by id: what a resume would do
        differently (a step already done is not run again with its new definition)."""
        old = {s.id: s for s in prev.steps}
        if not old or not all(s.digest for s in prev.steps):
            return []  # a record from before step digests: the file names must do
        changed, added = [], []
        forced = resume_plan.forced_from(self._past_steps(old))
        for i, step in enumerate(self.runbook.steps):
            rec = old.get(step.id)
            if rec is None:
                added.append(step.id)
            elif rec.digest != step.definition_digest():
                done = ""
                if rec.state in (OK, SKIPPED):
                    done = (" (done: would not run again)" if forced is None or i < forced
                            else f" (done: runs again after {self.runbook.steps[forced].id})")
                changed.append(step.id + done)
        removed = [i for i in old if i not in self._steps_by_id]
        out = []
        if changed:
            out.append(f"steps changed: {', '.join(changed)}")
        if added:
            out.append(f"steps added: {', '.join(added)}")
        if removed:
            out.append(f"steps removed: {', '.join(removed)}")
        return out or ["no step definition changed (only formatting, comments or "
                       "templates)"]

    def _resolve_step(self, ref: str, flag: str) -> int:
        if ref in self._steps_by_id:
            return self._steps_by_id[ref][0]
        if ref.isdigit() and 1 <= int(ref) <= len(self.runbook.steps):
            return int(ref) - 1
        import difflib

        close = difflib.get_close_matches(ref, list(self._steps_by_id), n=1)
        hint = f"did you mean `{close[0]}`?" if close else (
            "step ids: " + ", ".join(self._steps_by_id))
        raise UsageError(f"{flag} {ref}: no step with that id in runbook {self.runbook.name}",
                         hint=hint)

    def _selection(self) -> tuple[int, int | None, str]:
        """(first index to run, only index or None, reason text for others)."""
        if self.options.only_step:
            only = self._resolve_step(self.options.only_step, "--only")
            return only, only, _NOT_SELECTED_ONLY.format(step=self.runbook.steps[only].id)
        if self.options.from_step:
            first = self._resolve_step(self.options.from_step, "--from")
            return first, None, _NOT_SELECTED_FROM.format(step=self.runbook.steps[first].id)
        return 0, None, ""

    def _check_selection(self) -> None:
        if self.options.only_step and self.options.from_step:
            raise UsageError("--from and --only cannot be combined")
        self._selection()

    def _selected(self, index: int) -> bool:
        first, only, _ = self._selection()
        return index == only if only is not None else index >= first

    def _check_confirmations(self, prev: RunRecord | None) -> None:
        if self.options.yes or self.events.can_confirm():
            return
        start, left_out = 0, set()
        if prev is not None:  # what is kept is not asked about; a check may fail
            past = self._past_steps({s.id: s for s in prev.steps})
            found = resume_plan.may_rerun_from(past)
            start = len(self.runbook.steps) if found is None else found
            left_out = {p.id for p in past if p.not_selected}
        asking = [s.id for i, s in enumerate(self.runbook.steps)
                  if s.confirm and self._selected(i) and i >= start
                  and s.id not in left_out and self._may_run(s)]
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
        """Connect, preflight, lock, detect compose. Raises before anything is recorded."""
        if self._needs_connection():
            self._get_transport()
            if not self.options.skip_preflight and purpose == "run":
                self._preflight()
        if self.runbook.lock:
            path = lock_path(self.host, self.variables)
            self._lock = HostLock(self._get_transport(), self.host, path, run_id,
                                  self.runbook.name, purpose=purpose)
            self._lock.acquire(takeover_run_id=prev.id if prev is not None else None)
        if prev is not None and prev.remote_process:
            self._stop_recorded(prev)
        # a rollback runs compose too (built-in image restore, explicit undo bodies)
        self._detect_compose()

    def _preflight(self) -> None:
        try:
            from deployer.diagnose import doctor  # type: ignore[attr-defined]
        except ImportError:
            return
        check = getattr(doctor, "cheap_preflight", None)
        if check is None:
            return
        problems = check(self.runbook, self.host, self._get_transport(),
                         variables=self.variables)
        failed = [p for p in problems or [] if getattr(p, "severity", "error") == "error"]
        for p in problems or []:
            if p not in failed:
                self._notice(f"preflight: {p}", "warning")
        if failed:
            from deployer.errors import InputError

            raise InputError(list(failed), hint="fix the host, or skip these checks with "
                             "--skip-preflight")

    def _detect_compose(self) -> None:
        from deployer.facts import needed, resolve

        resolve(self.performer, needed((s for i, s in enumerate(self.runbook.steps) if self._selected(i)), self.variables), self.variables, self.host.name, notice=self._notice)  # noqa: E501

    def _build_record(self, run_id: str, prev: RunRecord | None) -> RunRecord:
        first, only, reason = self._selection()
        old = {s.id: s for s in prev.steps} if prev is not None else {}
        if prev is not None:
            record = prev
            record.resumes = record.resumes + [{"at": now_iso(), "operator": operator(),
                                                "pid": os.getpid(),
                                                "took_over_lock": bool(
                                                    self._lock and self._lock.took_over)}]
            record.status = RUN_RUNNING
            record.finished = None
            record.exit_code = None
            record.message = ""
            record.failed_step = None
            record.pid = os.getpid()
            record.digests = dict(self.digests) or record.digests
            record.variables, record.variables_key = self._variable_digests()
            record.options = {**record.options, **{k: v for k, v in
                                                   self.options.to_dict().items() if v}}
        else:
            variables, key = self._variable_digests()
            record = RunRecord(id=run_id, runbook=self.runbook.name, host=self.host.name,
                               runbook_path=self.runbook.path, address=self.host.address,
                               digests=dict(self.digests), variables=variables,
                               variables_key=key,
                               options={k: v for k, v in self.options.to_dict().items() if v})
        if prev is not None:
            self._resume = self._plan_resume(prev, old)
            if self._resume.again():
                record.resumes[-1]["runs_again"] = self._resume.again()
        steps: list[StepRecord] = []
        for i, step in enumerate(self.runbook.steps):
            rec = old.get(step.id)
            if rec is None:
                rec = StepRecord(id=step.id, name=step.name, index=i + 1, kind=step.kind,
                                 digest=step.definition_digest())
            else:
                rec.index, rec.name, rec.kind = i + 1, step.name, step.kind
                rec.digest = step.definition_digest()
                if self._resume is None or not self._resume.reruns(step.id):
                    steps.append(rec)  # kept: done (or left out) earlier in this run
                    continue
                _reset(rec)
            if not self._selected(i) and rec.state == PENDING:
                rec.state = SKIPPED
                rec.message = reason
            steps.append(rec)
        record.steps = steps
        self.captured = _known_captures(record)
        self._fill_earlier_captures(record, first if (only is None) else only)
        return record

    def _past_steps(self, old: dict[str, StepRecord]) -> list[resume_plan.PastStep]:
        """The runbook's steps as ``resume_plan`` sees them, from the record's ``old``
        steps (by id); steps this invocation does not select are left out."""
        past = []
        for i, step in enumerate(self.runbook.steps):
            rec = old.get(step.id)
            past.append(resume_plan.PastStep(
                id=step.id, state=rec.state if rec is not None else resume_plan.NEW,
                has_check=bool(step.check),
                secret_capture=rec is not None and rec.state == OK and bool(rec.captured_masked),
                not_selected=not self._selected(i) or (rec is not None and _left_out(rec))))
        return past

    def _plan_resume(self, prev: RunRecord,
                     old: dict[str, StepRecord]) -> resume_plan.ResumePlan:
        """Decide what the resume runs again: run the checks of the steps done earlier
        (in order, up to the first that fails), then ask ``resume_plan``."""
        past = self._past_steps(old)
        outcomes: dict[str, resume_plan.CheckOutcome] = {}
        probes = resume_plan.checks_to_probe(past)
        if probes:
            self.captured = _known_captures(prev)  # checks may name captured values
        for step_id in probes:
            outcomes[step_id] = self._run_check(step_id)
            if not outcomes[step_id].passed:
                break  # every later step runs again anyway
        return resume_plan.plan_resume(past, outcomes)

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
        if result.timed_out:
            detail = "timed out"
        elif result.exit_code is not None:
            detail = f"exit {result.exit_code}"
        else:
            detail = self.redactor.mask(result.message) or "it did not run"
        last = next((line for line in reversed(self._tail) if line.strip()), "")
        if last:
            detail += f": {last.strip()[:200]}"  # already masked (``_on_line``)
        return resume_plan.CheckOutcome(False, detail)

    def _fill_earlier_captures(self, record: RunRecord, first: int) -> None:
        """With --from/--only, captures of steps that will not run come from earlier
        runs of this runbook on this host, or from --var; otherwise refuse."""
        missing: list[tuple[Step, StepRecord]] = []
        for i, step in enumerate(self.runbook.steps[:first]):
            rec = record.steps[i]
            if (step.capture and step.capture not in self.captured
                    and step.capture not in self.variables and rec.state != OK):
                missing.append((step, rec))
        if not missing:
            return
        used: set[str] = set()
        for i, step in enumerate(self.runbook.steps):
            if self._selected(i) and record.steps[i].state not in (OK, SKIPPED):
                used |= _referenced_names(step, self.project_dir)
        missing = [(step, rec) for step, rec in missing if step.capture in used]
        if not missing:
            return
        history = self.store.list_runs(host=self.host.name, runbook=self.runbook.name)
        unresolved = []
        for step, rec in missing:
            for past in history:
                old = past.find(step.id)
                if (old is not None and old.state in (OK, ROLLED_BACK)
                        and step.capture in old.captured
                        and step.capture not in old.captured_masked):
                    value = old.captured[step.capture]
                    self.captured[step.capture] = value
                    rec.captured = {step.capture: value}
                    self._notice(f"{step.capture} (captured by {step.id}) taken from run "
                                 f"{past.id}")
                    break
            else:
                unresolved.append(step)
        if unresolved:
            names = ", ".join(f"{s.capture} (step {s.id})" for s in unresolved)
            raise UsageError(
                f"steps before the starting step capture values no earlier run recorded: "
                f"{names}", hint="start earlier, or give them with "
                + " ".join(f"--var {s.capture}=VALUE" for s in unresolved))

    # -- transport, log, state -------------------------------------------------------

    def _get_transport(self) -> Any:
        if self._transport is None:
            transport = self._factory(self.host, self.options.accept_new_host_key,
                                      self._sudo_password)
            transport.connect()
            if hasattr(transport, "on_process"):
                transport.on_process = self._remote_started
            self._transport = transport
        return self._transport

    def _remote_started(self, proc: Any) -> None:
        """A remote command has run long enough to be worth recording: if deployer
        dies now, ``--resume`` finds (and stops) it from the record."""
        if self.record is None or not self._in_command:
            return  # the lock's and other bookkeeping scripts are not steps
        self.record.remote_process = {**proc.to_dict(), "step": self._current,
                                      "at": now_iso()}
        self._save()

    def _process_ended(self) -> None:
        """The last remote command is known to have ended: forget it (the record is
        written with the next transition)."""
        if self.record is not None and self.record.remote_process is not None:
            transport = self._transport
            if transport is None or getattr(transport, "current_process", None) is None:
                self.record.remote_process = None

    def _kill_grace(self) -> float:
        from deployer.transport import KILL_GRACE

        return float(getattr(self._transport, "kill_grace", KILL_GRACE) or KILL_GRACE)

    def _stop_leftover(self, proc: Any, what: str) -> tuple[bool, str]:
        """Reconnect and stop the process group ``proc`` left running (``what`` says
        whose, for the messages). (True, "") once it is known to be gone; otherwise
        (False, why it may still be running)."""
        from deployer.transport import (
            PROCESS_STOPPED,
            still_running_reason,
            stop_remote_process,
        )

        grace = self._kill_grace()
        try:
            status = stop_remote_process(self._get_transport(), proc, grace)
        except (TransportError, OSError) as exc:
            self._drop_transport()
            return False, f"deployer could not reconnect to stop it ({exc})"
        if status == PROCESS_STOPPED:
            self._notice(f"{what} (process group {proc.pgid}) was still running on "
                         f"{self.host.name}: stopped it (TERM, then KILL after {grace:g}s)",
                         "warning")
            return True, ""
        why = still_running_reason(status, proc)
        if why:
            return False, why
        self._notice(f"{what} (process group {proc.pgid}) is no longer running on "
                     f"{self.host.name}")
        return True, ""

    def _stop_recorded(self, prev: RunRecord) -> None:
        """``--resume``/``rollback``: stop the command run ``prev`` left running on
        the host (recorded at its start) before anything else runs; refuse if that
        cannot be done."""
        from deployer.transport import RemoteProcess

        data = prev.remote_process
        proc = RemoteProcess.from_dict(data) if data else None
        if proc is None:
            return
        step = str((data or {}).get("step") or "?")
        gone, why = self._stop_leftover(proc, f"the command of step {step} left by run "
                                              f"{prev.id}")
        if gone:
            prev.remote_process = None
            return
        if self.options.force and not proc.start:
            # Nothing to verify it with (a host without /proc): the operator's call.
            self._notice(f"the command of step {step} left by run {prev.id}: {why}; going "
                         "on (--force)", "warning")
            prev.remote_process = None
            return
        self._leftover = proc  # keeps the lock: nothing else may start beside it
        raise LockHeldError(
            f"step {step} of run {prev.id} may still be running on {self.host.name}: {why}; "
            "refusing to run anything alongside it",
            holder={"run_id": prev.id, "pgid": proc.pgid, "step": step},
            hint=(f"check on the host (`ps -o pid,lstart,args -g {proc.pgid}`), stop it "
                  f"(`kill -KILL -- -{proc.pgid}`, with sudo if it runs as root), then "
                  "run again"))

    def _drop_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    def _start_log(self) -> None:
        assert self.record is not None
        self._log = RunLog(self.store.log_path(self.record.id))
        self._log.event(f"{self.record.id} {self.runbook.name} on {self.host.name} "
                        f"by {operator()} (pid {os.getpid()})")
        for text in self.notices:
            self._log.event(text)

    def _log_event(self, text: str) -> None:
        if self._log is not None:
            self._log.event(self.redactor.mask(text))

    def _step_done(self, rec: StepRecord) -> None:
        """Record a step's final state and tell the log and the events about it. The
        write itself goes out with the next transition (see ``_flush_state``)."""
        detail = f" (exit {rec.exit_code})" if rec.state == FAILED else ""
        self._log_event(f"step {rec.id} {rec.state}{detail}"
                        + (f": {rec.message}" if rec.message else ""))
        self._unsaved = True
        self.events.step_finished(self.host.name, rec)

    def _flush_state(self) -> None:
        """Write the record if a step ended since the last write. Called before any
        command reaches the host and before waiting for the operator, so what the host
        did is on disk before it is asked to do more, or left idle for long."""
        if self._unsaved:
            self._save()

    def _save(self) -> None:
        self._unsaved = False
        if self.record is not None:
            if self._log is not None:
                self._log.flush()
            self.store.save(self.record)

    def _notice(self, text: str, level: str = "info") -> None:
        text = self.redactor.mask(text)
        self.notices.append(text)
        if self._log is not None:
            self._log.event(text)
        self.events.notice(self.host.name, text, level)

    def _on_line(self, stream: str, line: str) -> None:
        masked = self.redactor.mask(line)
        self._tail.append(masked)
        if self._log is not None:
            self._log.write(self.host.name, self._current, stream, masked)
        if not self._quiet:
            self.events.output(self.host.name, self._current, stream, masked)

    def _close(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None and lock.held and self._leftover is not None:
            # A command of this run may still be changing the host: nobody else may
            # start there until it is known to be gone (--resume takes the lock over).
            self._notice(f"the lock {lock.path} is kept: a remote command of this run may "
                         f"still be running (process group {self._leftover.pgid})", "warning")
            lock = None
        if lock is not None and lock.held:
            for _ in range(2):
                try:
                    lock.transport = self._get_transport()
                    if not lock.release():
                        self._lock_lost(lock)
                    break
                except KeyboardInterrupt:
                    continue
                except (DeployerError, OSError) as exc:
                    self._notice(f"could not release the lock {lock.path}: {exc}; remove it "
                                 f"with `deployer unlock --host {self.host.name}`", "warning")
                    self._drop_transport()
                    break
        self._drop_transport()
        if self._log is not None:
            self._log.close()

    def _lock_lost(self, lock: HostLock) -> None:
        """The lock was not ours any more at the end: someone removed it (``deployer
        unlock``) or took it during the run, so another run may have overlapped."""
        if lock.release_state == "OTHER":
            who = lock.release_holder.describe() if lock.release_holder else "someone else"
            text = f"the host lock {lock.path} was taken by {who} during this run"
        else:
            text = (f"the host lock {lock.path} was removed during this run (`deployer "
                    "unlock`?)")
        self._lock_warning = (f"{text}: another run may have changed {self.host.name} at the "
                              "same time; check the host")
        self._notice(self._lock_warning, "warning")

    def _warn_lock_lost(self, outcome: RunOutcome) -> None:
        """Put a lock lost during the run into the summary and the record."""
        if not self._lock_warning or outcome is None:
            return
        outcome.message = f"{outcome.message}; WARNING: {self._lock_warning}"
        outcome.notices = list(self.notices)
        outcome.record.message = outcome.message
        self.store.save(outcome.record)

    # -- the run ---------------------------------------------------------------------

    def _execute(self, resumed: bool) -> RunOutcome:
        assert self.record is not None
        failure: Failure | None = None
        interrupted = False
        declined = False
        abandon = False
        try:
            failure, declined = self._run_steps()
        except (KeyboardInterrupt, _Interrupted) as exc:
            interrupted = True
            # A second Ctrl-C (or cancel()) while the command was still being stopped
            # is the operator's "abandon the rollback", however early it came.
            abandon = bool(getattr(exc, "second", False)) or self._cancels >= 2
            self._mark_interrupted(abandon)
        if interrupted:
            return self._after_interrupt(resumed, abandon)
        if declined:
            outcome = self._outcome(RUN_STOPPED, EXIT_FAILED,
                                    "stopped: a confirmation was declined; nothing was rolled "
                                    "back; resume with --resume", resumed=resumed)
            return self._finalise(outcome)
        if failure is None:
            failed_continue = [s.id for s in self.record.steps if s.state == FAILED]
            msg = "all steps done"
            if failed_continue:
                msg += f" (failed but on_failure: continue: {', '.join(failed_continue)})"
            return self._finalise(self._outcome(RUN_SUCCEEDED, EXIT_OK, msg, resumed=resumed))
        step = self._steps_by_id[failure.step_id][1]
        policy = step.on_failure or self.runbook.on_failure
        if self._leftover is not None:
            done = [s.id for s in self.record.steps if s.state == OK]
            outcome = self._outcome(
                RUN_FAILED, EXIT_FAILED,
                f"step {failure.step_id} failed; not rolled back: its remote command may "
                f"still be running (process group {self._leftover.pgid}), and undoing "
                f"alongside it is unsafe; still applied: {', '.join(done) or 'none'}; the "
                "lock is kept; --resume stops that command first, or refuses",
                failure=failure, resumed=resumed)
            return self._finalise(outcome)
        if self.options.no_rollback or policy == "stop":
            why = "--no-rollback" if self.options.no_rollback else "on_failure: stop"
            done = [s.id for s in self.record.steps if s.state == OK]
            outcome = self._outcome(
                RUN_FAILED, EXIT_FAILED,
                f"step {failure.step_id} failed; not rolled back ({why}); still applied: "
                f"{', '.join(done) or 'none'}; fix and resume with --resume",
                failure=failure, resumed=resumed)
            return self._finalise(outcome)
        try:
            report = self._roll_back(f"step {failure.step_id} failed")
        except KeyboardInterrupt:
            report = None
        if report is None or not report.complete:
            text = report.host_state() if report else "rollback interrupted"
            return self._finalise(self._outcome(
                RUN_ROLLBACK_INCOMPLETE, EXIT_FAILED, f"step {failure.step_id} failed; {text}",
                failure=failure, report=report, resumed=resumed))
        return self._finalise(self._outcome(
            RUN_ROLLED_BACK, EXIT_ROLLED_BACK, f"step {failure.step_id} failed; "
            f"{report.host_state()}", failure=failure, report=report, resumed=resumed))

    def _after_interrupt(self, resumed: bool, abandon: bool = False) -> RunOutcome:
        assert self.record is not None
        abandon = abandon or self._cancels >= 2  # a second cancel() while stopping
        self._cancel.clear()
        report = None
        proc = getattr(self._transport, "current_process", None)
        if proc is not None and not abandon and not self.options.no_rollback:
            # The group outlived the transport's wait: never undo beside it.
            try:
                gone, why = self._stop_leftover(proc, f"the command of step {self._current}")
            except KeyboardInterrupt:
                gone, why, abandon = False, "", True
            if not gone and not abandon:
                self._leftover = proc
                text = (f"interrupted; not rolled back: the remote command may still be "
                        f"running (process group {proc.pgid}): {why}; the lock is kept")
                return self._finalise(self._outcome(RUN_INTERRUPTED, EXIT_INTERRUPTED, text,
                                                    resumed=resumed))
        if self.options.no_rollback:
            text = "interrupted; not rolled back (--no-rollback); resume with --resume"
        elif abandon:
            # The rollback never starts: same outcome as abandoning it at its first undo.
            report = RollbackReport(abandoned=True, reason="interrupted",
                                    remaining=[r.id for r in self.record.steps
                                               if r.state == OK],
                                    partial=rollback_mod.partial_steps(self.record))
            self.record.rollback = report.to_dict()
            text = (f"interrupted; rollback abandoned (a second {self._interrupted_by} came "
                    f"while the step was being stopped); still applied: "
                    f"{', '.join(report.remaining) or 'none'}; the run can be resumed with "
                    "--resume")
        else:
            self._notice(f"interrupted ({self._interrupted_by}): rolling back the completed "
                         "steps (Ctrl-C again to abandon the rollback and leave the run "
                         "resumable)", "warning")
            try:
                report = self._roll_back("interrupted")
            except KeyboardInterrupt:
                report = None
            if report is None or report.abandoned:
                text = "interrupted; rollback abandoned; the run can be resumed with --resume"
            else:
                text = f"interrupted; {report.host_state()}"
        return self._finalise(self._outcome(RUN_INTERRUPTED, EXIT_INTERRUPTED, text,
                                            report=report, resumed=resumed))

    def _mark_interrupted(self, abandoned: bool = False) -> None:
        assert self.record is not None
        self._interrupt_named = True
        # The transport forgets a command once its whole process group is gone; one
        # it still names was not (yet) seen to stop.
        proc = getattr(self._transport, "current_process", None)
        by = self._interrupted_by
        if proc is None:
            how = "the remote command was stopped"
        else:
            self.record.remote_process = {**proc.to_dict(), "step": self._current,
                                          "at": now_iso()}
            how = (f"the remote command (process group {proc.pgid}) was sent TERM and had "
                   f"not ended when {'a second ' + by if abandoned else 'deployer'} stopped "
                   f"waiting; it gets KILL {self._kill_grace():g}s after the TERM; "
                   "--resume makes sure it is gone")
        for rec in self.record.steps:
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
        assert self.record is not None
        for i, step in enumerate(self.runbook.steps):
            rec = self.record.steps[i]
            if rec.state in (OK, SKIPPED):
                continue
            self._check_cancel()
            result = self._run_step(i, step, rec)
            if result == "declined":
                return None, True
            if isinstance(result, Failure):
                policy = step.on_failure or self.runbook.on_failure
                if policy == "continue" and self._leftover is None:
                    self._notice(f"step {step.id} failed; going on (on_failure: continue)",
                                 "warning")
                    continue
                self.record.failed_step = step.id
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
        if planned.skipped:
            return self._finish_skipped(rec, planned.skip_reason)
        if planned.skip_if is not None:
            probe = self._probe(planned.skip_if)
            if probe is not None and probe.ok:
                return self._finish_skipped(rec, "already done (skip_if succeeded)")
        if planned.confirm_question and not self.options.yes:
            self._flush_state()  # the operator may take a while to answer
            if not self.events.confirm(self.host.name, step.id,
                                       self.redactor.mask(planned.confirm_question)):
                rec.message = "confirmation declined"
                self._save()
                self._notice(f"step {step.id}: confirmation declined; stopping", "warning")
                return "declined"
        displays = [c.display(self.redactor.mask) for c in planned.commands]
        rec.state = RUNNING
        rec.started = now_iso()
        rec.exit_code = None
        rec.message = ""
        start = time.monotonic()
        result = Result(exit_code=None)
        attempts = step.retries + 1
        for attempt in range(1, attempts + 1):
            rec.attempts = attempt
            self._log_event(f"step {step.id} started" + (f" (attempt {attempt}/{attempts})"
                                                          if attempt > 1 else ""))
            self._save()
            self.events.step_started(self.host.name, rec, attempt, displays)
            self._tail.clear()  # the failure report shows the last attempt
            result = self._perform_all(planned.commands, step.body.timeout)
            if result.ok or self._leftover is not None:
                break
            if attempt < attempts:
                self._notice(f"step {step.id}: attempt {attempt}/{attempts} failed "
                             f"({self.redactor.mask(result.message)}); retrying"
                             + (f" in {step.delay:g}s" if step.delay else ""), "warning")
                if step.delay and self._cancel.wait(step.delay):
                    raise _Interrupted
                self._check_cancel()
        rec.duration = round(time.monotonic() - start, 3)
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
        self._flush_state()  # the record is current before anything touches the host
        for cmd in commands:
            self._check_cancel()
            self._in_command = True
            try:
                result = self.performer.perform(cmd, timeout)
            except TransportError as exc:
                self._in_command = False  # what runs next (stopping it) is no step
                return self._connection_lost(exc)
            finally:
                self._in_command = False
            if not result.ok and not result.interrupted:
                result = self._not_seen_to_end(result)
            self._process_ended()
            if result.interrupted:
                raise _Interrupted
            if not result.ok:
                return result
            if isinstance(cmd, (RemoteCommand, LocalCommand, HttpCheck)):
                last = result
        return Result(exit_code=0, stdout=last.stdout)

    def _not_seen_to_end(self, result: Result) -> Result:
        """A command stopped (timeout) but not seen to end within the transport's
        limit: try once more; if it may still run, nothing else may run beside it."""
        proc = getattr(self._transport, "current_process", None)
        if proc is None:
            return result
        gone, why = self._stop_leftover(proc, f"the command of step {self._current}, "
                                              "stopped earlier,")
        if gone:
            return result
        result.message = (f"{result.message.split(';')[0]}; "
                          f"{self._keep_leftover(proc, why)}")
        return result

    def _keep_leftover(self, proc: Any, why: str) -> str:
        """Remember a command that may still run on the host, so nothing else (a retry,
        the rollback) runs beside it and the record names it for --resume; returns
        the sentence for the step's message."""
        self._leftover = proc
        if self.record is not None:
            self.record.remote_process = {**proc.to_dict(), "step": self._current,
                                          "at": now_iso()}
        self._notice(f"the command of step {self._current} may still be running on "
                     f"{self.host.name}: {why}; nothing more is run on the host in this "
                     "run (no retry, no rollback)", "warning")
        return f"the remote command may still be running (process group {proc.pgid}): {why}"

    def _connection_lost(self, exc: TransportError) -> Result:
        """The connection died under a command: that command may go on running on the
        host. Reconnect and stop it before anything else (a retry, the rollback) runs
        there; if that fails, remember it so nothing does."""
        proc = getattr(self._transport, "current_process", None)
        self._drop_transport()
        message = f"SSH connection lost: {exc}"
        if proc is None:
            return Result(exit_code=None, message=message)
        gone, why = self._stop_leftover(proc, f"the command of step {self._current}, whose "
                                              "connection was lost,")
        if gone:
            if self.record is not None:
                self.record.remote_process = None
            return Result(exit_code=None, message=message + "; deployer reconnected and "
                          "made sure the remote command is no longer running")
        return Result(exit_code=None, message=f"{message}; {self._keep_leftover(proc, why)}")

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
        tail = list(self._tail)
        context = context or []
        diagnoses = self._diagnose(step, exit_code, tail + context + [rec.message])
        return Failure(step_id=step.id, step_name=rec.name, kind=step.kind,
                       exit_code=exit_code, message=rec.message, tail=tail[-TAIL_LINES:],
                       diagnoses=diagnoses, context=context,
                       summary=[] if diagnoses else self._summarize(step, exit_code,
                                                                    tail + context))

    def _stack_context(self, step: Step) -> list[str]:
        """After a compose/wait/http step failed: the stack's `compose ps` and the last
        log lines of services that exited, restart or are unhealthy (run quietly, into
        the run log; deployer.diagnose.context builds the command). Never raises."""
        from deployer.planner import uses_compose

        if self._leftover is not None or step.kind not in ("compose", "wait", "http"):
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
            self._log_event(f"step {step.id} failed: collecting the stack's state")
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

    def _diagnose(self, step: Step, exit_code: int | None, lines: list[str]) -> list[dict]:
        try:
            from deployer.diagnose import diagnose  # type: ignore[attr-defined]
        except ImportError:
            try:
                from deployer.diagnose.matcher import diagnose
            except ImportError:
                return []
        assert self.record is not None
        before = [s.id for s in self.record.steps if s.state in (OK, SKIPPED)]
        try:
            found = diagnose("\n".join(lines), kind=step.kind, exit_code=exit_code,
                             previous_steps=before, context=dict(self.variables))
        except TypeError:
            found = diagnose("\n".join(lines), kind=step.kind, exit_code=exit_code,
                             previous_steps=before)
        except Exception:  # noqa: BLE001 - a broken catalogue must not hide the failure
            return []
        return [{"id": d.id, "title": self.redactor.mask(d.title),
                 "cause": self.redactor.mask(d.cause), "fix": self.redactor.mask(d.fix),
                 "line": self.redactor.mask(d.matched_line)}
                for d in found[:3]]

    def _summarize(self, step: Step, exit_code: int | None, lines: list[str]) -> list[str]:
        """The never-shrug summary (deployer.diagnose.summary) of an unknown failure."""
        try:
            from deployer.diagnose.summary import summarize

            found = summarize(lines, exit_code=exit_code, kind=step.kind)
        except Exception:  # noqa: BLE001 - a summary must never hide the failure itself
            return []
        return [self.redactor.mask(line) for line in found.lines()]

    # -- rollback --------------------------------------------------------------------

    def _roll_back(self, reason: str) -> RollbackReport:
        assert self.record is not None
        self._flush_state()
        self._cancel.clear()
        todo = [r.id for r in rollback_mod.targets(self.record)]
        self.events.rollback_started(self.host.name, reason, todo)
        if self._log is not None:
            self._log.event(f"rollback ({reason}): {', '.join(todo) or 'nothing to undo'}")
        executor = self

        class _Forward(rollback_mod.RollbackEvents):
            def undo_started(self, rec: StepRecord, commands: list[Any]) -> None:
                executor.events.undo_started(executor.host.name, rec,
                                             [c.display(executor.redactor.mask)
                                              for c in commands])

            def undo_finished(self, rec: StepRecord, state: str, message: str) -> None:
                executor._log_event(f"undo {rec.id}: {state}" + (f" ({message})"
                                                                  if message else ""))
                executor.events.undo_finished(executor.host.name, rec, state, message)

        return rollback_mod.roll_back(self.record, self._render_undo, self._perform_undo,
                                      self._save, _Forward(), reason)

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

    def _outcome(self, status: str, code: int, message: str, failure: Failure | None = None,
                 report: RollbackReport | None = None, resumed: bool = False) -> RunOutcome:
        assert self.record is not None
        return RunOutcome(
            run_id=self.record.id, host=self.host.name, runbook=self.runbook.name,
            status=status, exit_code=code, message=self.redactor.mask(message),
            record=self.record, state_path=str(self.store.json_path(self.record.id)),
            log_path=str(self.store.log_path(self.record.id)), failure=failure,
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
        if self._log is not None:
            self._log.event(f"{record.status}: {outcome.message}")
        self._save()
        return outcome


def _reset(rec: StepRecord) -> None:
    rec.state = PENDING
    rec.exit_code = None
    rec.message = ""
    rec.attempts = 0
    rec.started = rec.finished = None
    rec.duration = None
    rec.captured = {}
    rec.captured_masked = []
    rec.tail = []
    rec.rollback = {}


def _left_out(rec: StepRecord) -> bool:
    """A step skipped because ``--from``/``--only`` left it out of its run."""
    if rec.state != SKIPPED:
        return False
    return any(rec.message.startswith(text.split("{")[0])
               for text in (_NOT_SELECTED_FROM, _NOT_SELECTED_ONLY))


def _referenced_names(step: Step, project_dir: str) -> set[str]:
    """Template names a step (with its rollback, when, skip_if, confirm, and any
    template file it names) refers to; used to tell which captures a step needs."""
    import jinja2
    import jinja2.meta

    from deployer.templating import environment, strings_in

    env = environment(project_dir)
    texts: list[str] = []
    bodies = [step.body] + ([step.rollback] if isinstance(step.rollback, StepBody) else [])
    for body in bodies:
        texts += strings_in(body.options) + strings_in(body.env) + strings_in(body.cwd)
        for key in ("template", "file", "src"):
            name = body.options.get(key)
            if isinstance(name, str) and "{{" not in name:
                try:
                    texts.append(env.loader.get_source(env, name)[0])  # type: ignore[union-attr]
                except (jinja2.TemplateNotFound, OSError):
                    pass
    if step.when is not None and not isinstance(step.when, bool):
        text = str(step.when).strip()
        texts.append(text if "{{" in text else "{{ " + text + " }}")
    texts += strings_in(step.skip_if) + strings_in(step.check) + strings_in(step.confirm)
    names: set[str] = set()
    for text in texts:
        try:
            names |= jinja2.meta.find_undeclared_variables(env.parse(text))
        except jinja2.TemplateSyntaxError:
            continue
    return names


def _known_captures(record: RunRecord) -> dict[str, str]:
    """Captured values a record holds in clear (masked ones are not usable)."""
    out: dict[str, str] = {}
    for rec in record.steps:
        if rec.state in (OK, SKIPPED, ROLLED_BACK, ROLLBACK_FAILED):
            for name, value in rec.captured.items():
                if name not in rec.captured_masked:
                    out[name] = value
    return out
