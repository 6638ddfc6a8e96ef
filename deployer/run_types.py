"""What crosses the executor's seam: ``RunOptions`` in, ``Events`` while it runs,
``RunOutcome`` out.

Plain data and a no-op listener, so the application layer and the CLI can name them
without importing the step loop; ``deployer.executor`` re-exports all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployer.errors import EXIT_OK
from deployer.failure import Failure
from deployer.rollback import RollbackReport
from deployer.state import RunRecord, StepRecord


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

    def recorded(self) -> dict[str, Any]:
        """The options worth keeping in the run record: the ones set."""
        return {k: v for k, v in self.to_dict().items() if v}


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


__all__ = ["Events", "RunOptions", "RunOutcome"]
