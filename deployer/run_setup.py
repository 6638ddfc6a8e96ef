"""What a run starts from, before anything reaches the host: the run it resumes (and
whether it may), whether its inputs changed since, and the record it writes.

``RunSetup`` answers from the local state (``StateStore``) and the invocation:

- ``find_resumable``: the latest run of this runbook on this host, refused if it
  succeeded or its deployer is still alive on this machine;
- ``check_stale``: refuse (``StalePlanError``, listing what changed; names and step
  ids, never values) to resume or roll back a run whose files or variables changed,
  unless ``--force``; the comparisons themselves are ``resume_plan``'s;
- ``new_record`` / ``resumed_record`` / ``step_record``: the run record, with each
  step new, kept (done earlier in this run) or reset to run again, and the steps the
  selection leaves out skipped;
- ``unconfirmable``: the steps that would ask for a confirmation nobody can give.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from deployer import resume_plan
from deployer.errors import LockHeldError, StalePlanError, UsageError
from deployer.models import Host, Runbook, Step
from deployer.outcomes import RunStatus, StepStatus
from deployer.selection import Selection
from deployer.state import (
    RunRecord,
    StateStore,
    StepRecord,
    deployer_alive,
    key_id,
    now_iso,
    operator,
    plain_value,
    variable_digests,
)

Notice = Callable[[str, str], None]


class RunSetup:
    """The run-start questions of one invocation (runbook, host, options, inputs)."""

    def __init__(self, runbook: Runbook, host: Host, store: StateStore, *,
                 options: dict[str, Any], force: bool, digests: Mapping[str, str],
                 variables: Mapping[str, Any], notice: Notice,
                 mask: Callable[[str], str] = lambda text: text) -> None:
        self.runbook = runbook
        self.host = host
        self.store = store
        self.options = options  # the options worth recording (the set ones)
        self.force = force
        self.digests = dict(digests)
        self.variables = variables  # as given (the record keeps their digests)
        self._notice = notice
        self._mask = mask

    def find_resumable(self) -> RunRecord:
        name, host = self.runbook.name, self.host.name
        prev = self.store.latest(name, host)
        if prev is None:
            raise UsageError(f"no run of {name} on {host} to resume",
                             hint=f"start one with: deployer run {name} --host {host}")
        if prev.status == RunStatus.SUCCEEDED:
            raise UsageError(f"the latest run of {name} on {host} ({prev.id}) succeeded; "
                             "there is nothing to resume",
                             hint="run without --resume to deploy again")
        machine = prev.operator.rpartition("@")[2]
        if (prev.status == RunStatus.RUNNING and machine == operator().rpartition("@")[2]
                and prev.pid != os.getpid() and deployer_alive(prev.pid)):
            raise LockHeldError(f"run {prev.id} is still running (pid {prev.pid} on this "
                                "machine)", holder={"run_id": prev.id, "pid": prev.pid},
                                hint="wait for it, or stop it with Ctrl-C in its terminal")
        self._check_unseen_command(prev, machine)
        return prev

    def _check_unseen_command(self, prev: RunRecord, machine: str) -> None:
        """A run another machine left mid-step: that machine recorded the step's remote
        process in its own record (the host's copy is written between commands), so no
        leftover can be stopped from here. Refused unless --force, after a look."""
        running = [s.id for s in prev.steps if s.state == StepStatus.RUNNING]
        if (prev.status != RunStatus.RUNNING or not running or prev.remote_process
                or machine == operator().rpartition("@")[2] or self.force):
            return
        raise UsageError(
            f"run {prev.id} was left by {prev.operator} during step {running[0]}, whose "
            f"command may still be running on {self.host.name}: that machine recorded its "
            "process, this one cannot stop it",
            hint=f"look on the host (`ps -ef`) and stop it if it still runs (or resume from "
                 f"{machine}, which can), then resume with --resume --force")

    # -- staleness -----------------------------------------------------------------------

    def variable_digests(self) -> tuple[dict[str, str], str]:
        """Keyed digests of this run's variables (see ``state.variable_digests``) and
        the key's id. Names that steps capture are left out: on a later --from they
        may come from --var, standing in for the step that did not run again."""
        captured = {s.capture for s in self.runbook.steps if s.capture}
        key = self.store.digest_key()
        values = {k: v for k, v in self.variables.items() if k not in captured}
        return variable_digests(values, key), key_id(key)

    def values(self) -> dict[str, Any]:
        """The variables' values for the record (captured names left out, as for the
        digests), every string masked."""
        captured = {s.capture for s in self.runbook.steps if s.capture}
        return {str(k): plain_value(v, self._mask) for k, v in self.variables.items()
                if k not in captured}

    def cli_keys(self) -> list[str]:
        return sorted(getattr(self.variables, "cli_keys", frozenset()))

    def recorded_cli_values(self, prev: RunRecord) -> dict[str, Any]:
        """The values ``prev`` was given with --var that this invocation does not give:
        a resume or rollback reuses them, so nobody has to remember `--var release=v5`.
        A value recorded masked (it held a secret) cannot be reused."""
        return resume_plan.reusable_cli_values(prev.values, prev.cli_vars, self.cli_keys())

    def _variable_changes(self, prev: RunRecord) -> list[str]:
        cli: frozenset[str] = getattr(self.variables, "cli_keys", frozenset())
        if prev.values:
            return resume_plan.value_changes(prev.values, self.values(), cli)
        if not prev.variables:
            return []  # recorded before variables were
        current, kid = self.variable_digests()
        if prev.variables_key and prev.variables_key != kid:
            self._notice(f"variables cannot be compared with run {prev.id}: the key "
                         f"{self.store.root / '.key'} changed since", "warning")
            return []
        return resume_plan.variable_changes(prev.variables, current, cli)

    def past(self, prev: RunRecord, selection: Selection) -> list[resume_plan.PastStep]:
        return resume_plan.past_steps(self.runbook.steps, {s.id: s for s in prev.steps},
                                      selection.selected)

    def check_stale(self, prev: RunRecord, action: str, selection: Selection) -> None:
        from deployer.planner import stale_changes

        changes = []
        if prev.digests and self.digests:
            changes = stale_changes(prev.digests, self.digests)
            if changes:
                old = {s.id: s for s in prev.steps}
                changes += resume_plan.step_changes(old, self.runbook.steps,
                                                    self.past(prev, selection))
        changes += self._variable_changes(prev)
        if not changes:
            return
        if self.force:
            self._notice(f"inputs changed since run {prev.id} ({'; '.join(changes)}); "
                         "going on (--force)", "warning")
            return
        raise StalePlanError(
            f"refusing to {action} run {prev.id}: its inputs changed since", changes,
            hint=("review the change with `deployer plan`; a --var left out takes the run's "
                  "own value, so drop the changed --var to keep it; or start a new run, or "
                  "add --force to use the new inputs anyway"))

    def unconfirmable(self, prev: RunRecord | None, selection: Selection,
                      may_run: Callable[[Step], bool]) -> list[str]:
        """Steps that will ask for a confirmation (selected, not kept from ``prev``,
        ``when`` not already false), in order."""
        start, left_out = 0, set()
        if prev is not None:  # what is kept is not asked about; a check may fail
            past = self.past(prev, selection)
            found = resume_plan.may_rerun_from(past)
            start = len(self.runbook.steps) if found is None else found
            left_out = {p.id for p in past if p.not_selected}
        return [s.id for i, s in enumerate(self.runbook.steps)
                if s.confirm and selection.selected(i) and i >= start
                and s.id not in left_out and may_run(s)]

    # -- the record ----------------------------------------------------------------------

    def new_record(self, run_id: str) -> RunRecord:
        variables, key = self.variable_digests()
        return RunRecord(id=run_id, runbook=self.runbook.name, host=self.host.name,
                         runbook_path=self.runbook.path, address=self.host.address,
                         digests=dict(self.digests), variables=variables,
                         variables_key=key, options=dict(self.options),
                         values=self.values(), cli_vars=self.cli_keys())

    def resumed_record(self, prev: RunRecord, took_over_lock: bool) -> RunRecord:
        """``prev``, marked running again by this process."""
        prev.resumes = prev.resumes + [{"at": now_iso(), "operator": operator(),
                                        "pid": os.getpid(), "took_over_lock": took_over_lock}]
        prev.status = RunStatus.RUNNING
        prev.finished = None
        prev.exit_code = None
        prev.message = ""
        prev.failed_step = None
        prev.pid = os.getpid()
        prev.digests = dict(self.digests) or prev.digests
        prev.variables, prev.variables_key = self.variable_digests()
        prev.values = self.values()
        prev.cli_vars = sorted(set(prev.cli_vars) | set(self.cli_keys()))
        prev.options = {**prev.options, **self.options}
        return prev

    def step_record(self, index: int, step: Step, rec: StepRecord | None,
                    reruns: Callable[[str], bool] | None, selection: Selection) -> StepRecord:
        """The record of one step for this run: new, kept (done or left out earlier in
        this run; ``reruns`` is None for a new run) or reset to run again; a step the
        selection leaves out is skipped."""
        if rec is None:
            rec = StepRecord(id=step.id, name=step.name, index=index + 1, kind=step.kind,
                             digest=step.definition_digest())
        else:
            rec.index, rec.name, rec.kind = index + 1, step.name, step.kind
            rec.digest = step.definition_digest()
            if reruns is None or not reruns(step.id):
                return rec
            _reset(rec)
        if not selection.selected(index) and rec.state == StepStatus.PENDING:
            rec.state = StepStatus.SKIPPED
            rec.message = selection.reason
        return rec


def _reset(rec: StepRecord) -> None:
    rec.state = StepStatus.PENDING
    rec.exit_code = None
    rec.message = ""
    rec.attempts = 0
    rec.started = rec.finished = None
    rec.duration = None
    rec.captured = {}
    rec.captured_masked = []
    rec.tail = []
    rec.rollback = {}
