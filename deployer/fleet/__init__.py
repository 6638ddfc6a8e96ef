"""Multi-host orchestration: run one runbook on many hosts, in parallel or in rolling
batches, with a failure budget, and aggregate per-host results.

Each host is run by a ``run_one(host) -> HostOutcome`` callable (``deployer.app`` builds it
around the executor), so every host has its own connection, checkpoint, lock and
rollback: a failure on one host never touches another. This package only schedules,
collects and records; it never prints. Progress reaches the CLI as ``FleetEvent``s.

- ``scheduler``: ``run_fleet`` / ``FleetScheduler``, the rules below;
- ``options``: ``--parallel``, ``--batch-size``, ``--max-fail`` checked;
- ``results``: host statuses, ``HostOutcome``, ``FleetOutcome``, events, exit code;
- ``record``: the fleet record; ``resume``: what ``--resume`` does on each host.

Scheduling rules (documented for operators in docs/multi-host.md):

- hosts start in the given (inventory) order; at most ``width`` run at once, where
  ``width`` is ``parallel`` (default: ``batch_size`` when rolling, else 1), capped by
  the batch size;
- with ``batch_size`` K, hosts are cut into batches of K and a batch starts only when
  the previous batch has finished and the failure budget still holds; with the default
  budget of 0 that means "the whole previous batch succeeded";
- ``max_fail`` ("N" or "P%") is the failure budget over the whole run; once more hosts
  than that have failed, no new host is started. Hosts already running finish (and
  roll back) on their own; hosts never started are reported as ``not_started``;
- Ctrl-C (or SIGTERM) stops starting hosts and asks the running ones to stop
  (``on_interrupt``); a second one stops waiting for them;
- with ``fleet_rollback="all"`` (the runbook's ``fleet_rollback: all``), once the
  failure budget is exceeded and every running host has finished, each host that
  finished ok in this fleet run (and each host a ``--resume`` skipped because an earlier
  part of it finished it) is rolled back by ``roll_back_one``, the same path as
  ``deployer rollback``. Not after Ctrl-C: the operator asked to stop, not to undo.

Exit code of a fleet run: the worst per-host code (``results``).

A fleet record (``.deployer/fleets/<id>.json``, rewritten atomically when a host's run
starts and when it finishes) lets ``--resume`` on a group pick exactly the hosts that
did not finish.
"""

from __future__ import annotations

from .options import batches_of, fleet_width, parse_max_fail
from .record import FleetRecord, fleets_dir, latest_fleet_record, load_fleet_records
from .results import (
    ERROR,
    EXIT_SEVERITY,
    FAILED,
    INTERRUPTED,
    LOCKED,
    NOT_STARTED,
    OK,
    ROLLED_BACK,
    SKIPPED,
    STATUSES,
    SUCCESS_STATUSES,
    EventSink,
    FleetEvent,
    FleetOutcome,
    HostOutcome,
    outcome_from_error,
    status_for_exit_code,
    worst_exit_code,
)
from .resume import (
    LatestRun,
    ResumeAction,
    deployment_start_ns,
    resume_actions,
    skipped_outcome,
)
from .scheduler import FleetScheduler, run_fleet

__all__ = [
    "ERROR", "EXIT_SEVERITY", "FAILED", "INTERRUPTED", "LOCKED", "NOT_STARTED", "OK",
    "ROLLED_BACK", "SKIPPED", "STATUSES", "SUCCESS_STATUSES", "EventSink", "FleetEvent",
    "FleetOutcome", "FleetRecord", "FleetScheduler", "HostOutcome", "LatestRun",
    "ResumeAction", "batches_of", "deployment_start_ns", "fleet_width", "fleets_dir",
    "latest_fleet_record", "load_fleet_records", "outcome_from_error", "parse_max_fail",
    "resume_actions", "run_fleet", "skipped_outcome", "status_for_exit_code",
    "worst_exit_code",
]
