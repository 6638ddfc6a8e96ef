"""What a fleet run reports: per-host statuses and outcomes, the fleet's outcome and
exit code, and the progress events the CLI renders.

Exit code of a fleet run: the worst per-host code, ordered by how much attention the
operator owes the fleet (``EXIT_SEVERITY``): 0 < 4 (lock held, nothing done) < 2 (bad
input / host key, nothing done) < 1 (failed, rolled back) < 3 (failed, host left
changed) < 130 (interrupted). ``not_started`` hosts add nothing: the failure that
stopped them already sets the code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from deployer.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_USAGE,
    DeployerError,
    HostKeyError,
    LockHeldError,
    TransportError,
)
from deployer.models import Host
from deployer.outcomes import EXIT_TABLE, host_status, worst

# Per-host statuses.
OK = "ok"  # every step finished (or was skipped by its own condition)
ROLLED_BACK = "rolled_back"  # a step failed, rollback completed (exit 1)
FAILED = "failed"  # a step failed, rollback incomplete or not run (exit 3)
LOCKED = "locked"  # another run holds the host lock (exit 4)
ERROR = "error"  # bad input, refused host key, stale resume... nothing run (exit 2)
INTERRUPTED = "interrupted"  # Ctrl-C (exit 130)
NOT_STARTED = "not_started"  # never started: budget exceeded, batch failed, Ctrl-C
SKIPPED = "skipped"  # --resume: this host already finished ok

STATUSES = (OK, ROLLED_BACK, FAILED, LOCKED, ERROR, INTERRUPTED, NOT_STARTED, SKIPPED)
SUCCESS_STATUSES = frozenset({OK, SKIPPED})

# Higher = needs more attention (the one table: deployer.outcomes.EXIT_TABLE).
EXIT_SEVERITY: dict[int, int] = {code: row.severity for code, row in EXIT_TABLE.items()}

# Summary order: what the operator must look at first.
_SUMMARY_RANK = {FAILED: 0, INTERRUPTED: 1, ROLLED_BACK: 2, ERROR: 3, LOCKED: 4,
                 NOT_STARTED: 5, OK: 6, SKIPPED: 7}


@dataclass
class HostOutcome:
    """The result of one host in a fleet run (JSON-friendly via ``to_dict``)."""

    host: str
    status: str
    exit_code: int
    run_id: str | None = None
    failed_step: str | None = None
    diagnosis: Any = None  # str or a JSON-friendly dict from deployer.diagnose
    message: str = ""
    duration: float = 0.0
    steps_done: int = 0
    steps_total: int = 0
    address: str = ""
    # Set when fleet_rollback: all rolled this host back: the hosts whose failure did.
    rolled_back_for: list[str] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def counts_as_failure(self) -> bool:
        return self.status not in SUCCESS_STATUSES and self.status != NOT_STARTED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = round(self.duration, 3)
        return data


def status_for_exit_code(code: int) -> str:
    """The host status a bare exit code stands for (unknown codes count as failed)."""
    return host_status(code)


def outcome_from_error(host: Host, error: BaseException) -> HostOutcome:
    """Turn an exception that escaped ``run_one`` into that host's outcome, so one
    host's problem (refused key, lock held, dead connection, even a bug) never stops
    the scheduler or hides the other hosts' results."""
    if isinstance(error, LockHeldError):
        status, code = LOCKED, EXIT_LOCKED
    elif isinstance(error, HostKeyError):
        status, code = ERROR, EXIT_USAGE
    elif isinstance(error, TransportError):
        # The connection died: whether steps ran is unknown, so the host needs a look.
        status, code = FAILED, EXIT_FAILED
    elif isinstance(error, DeployerError):
        code = error.exit_code
        status = status_for_exit_code(code)
    elif isinstance(error, KeyboardInterrupt):
        status, code = INTERRUPTED, EXIT_INTERRUPTED
    else:
        status, code = FAILED, EXIT_FAILED
    message = str(error) if isinstance(error, DeployerError) else (
        f"internal error: {type(error).__name__}: {error}")
    hint = getattr(error, "hint", "")
    return HostOutcome(host=host.name, address=host.address, status=status, exit_code=code,
                       message=message, diagnosis=hint or None)


def worst_exit_code(codes: Iterable[int]) -> int:
    """The code ranked worst by ``EXIT_SEVERITY`` (unknown codes rank as 3)."""
    return worst(list(codes))


@dataclass(frozen=True)
class FleetEvent:
    """Progress for the CLI. ``kind`` is one of:

    ``batch_start`` (batch, hosts), ``host_start`` (host), ``host_done`` (host,
    outcome), ``stop`` (message: why no new host will start), ``interrupt`` (message),
    ``fleet_rollback`` (message, hosts: the hosts about to be rolled back),
    ``rollback_start`` (host), ``rollback_done`` (host, outcome: the host's outcome
    after its rollback), ``done`` (message: one-line tally).
    """

    kind: str
    host: str | None = None
    batch: int | None = None
    hosts: tuple[str, ...] = ()
    outcome: HostOutcome | None = None
    message: str = ""


EventSink = Callable[[FleetEvent], None]


@dataclass
class FleetOutcome:
    """Per-host outcomes in the order hosts were given, plus the aggregate."""

    hosts: list[HostOutcome]
    exit_code: int
    stopped_reason: str | None = None
    interrupted: bool = False
    fleet_id: str | None = None
    duration: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    # fleet_rollback: all ran: {"because": failed hosts, "hosts": hosts rolled back}.
    fleet_rollback: dict[str, Any] | None = None

    def by_status(self, status: str) -> list[HostOutcome]:
        return [h for h in self.hosts if h.status == status]

    def counts(self) -> dict[str, int]:
        tally = {s: 0 for s in STATUSES}
        for h in self.hosts:
            tally[h.status] = tally.get(h.status, 0) + 1
        return {s: n for s, n in tally.items() if n}

    def for_summary(self) -> list[HostOutcome]:
        """Hosts needing attention first (failed, interrupted, rolled back, ...), each
        group in the original order."""
        indexed = list(enumerate(self.hosts))
        indexed.sort(key=lambda p: (_SUMMARY_RANK.get(p[1].status, 0), p[0]))
        return [h for _, h in indexed]

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def tally_line(self) -> str:
        parts = [f"{n} {s.replace('_', ' ')}" for s, n in self.counts().items()]
        return f"{len(self.hosts)} hosts: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fleet_id": self.fleet_id,
            "exit_code": self.exit_code,
            "ok": self.ok,
            "interrupted": self.interrupted,
            "stopped_reason": self.stopped_reason,
            "duration": round(self.duration, 3),
            "options": self.options,
            "counts": self.counts(),
            "fleet_rollback": self.fleet_rollback,
            "hosts": [h.to_dict() for h in self.hosts],
        }


__all__ = [
    "ERROR", "EXIT_SEVERITY", "FAILED", "INTERRUPTED", "LOCKED", "NOT_STARTED", "OK",
    "ROLLED_BACK", "SKIPPED", "STATUSES", "SUCCESS_STATUSES", "EventSink", "FleetEvent",
    "FleetOutcome", "HostOutcome", "outcome_from_error", "status_for_exit_code",
    "worst_exit_code",
]
