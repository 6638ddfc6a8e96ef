"""``--resume`` on a group: what to do on each host (skip, resume its run, or start),
from the fleet record of the previous group run and each host's run history. Pure:
the caller reads the records and the history."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from deployer.errors import EXIT_OK
from deployer.models import Host

from .results import NOT_STARTED, OK, SKIPPED, SUCCESS_STATUSES, HostOutcome


@dataclass(frozen=True)
class ResumeAction:
    """What ``--resume`` does on one host: ``skip`` (finished ok), ``resume`` (continue
    run ``run_id``), or ``start`` (never ran, or nothing to continue)."""

    action: str
    run_id: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class LatestRun:
    """The newest run of the runbook on one host, from the run history. ``active_ns``
    is when it last started or resumed (ns since the epoch; 0 when unknown)."""

    run_id: str
    status: str  # a fleet status: "ok" for a run that succeeded
    active_ns: int = 0


def deployment_start_ns(record: dict[str, Any],
                        records: Iterable[dict[str, Any]] = ()) -> int:
    """When the group run that ``record`` belongs to began: the start of the first
    record of its ``--resume`` chain (``resumed_from`` links), so a run a host started
    in any earlier part of the chain still counts as this deployment's."""
    by_id = {r.get("id"): r for r in records}
    start = int(record.get("started_ns") or 0)
    seen = {record.get("id")}
    parent = by_id.get(record.get("resumed_from"))
    while parent is not None and parent.get("id") not in seen:
        seen.add(parent.get("id"))
        start = min(start, int(parent.get("started_ns") or start))
        parent = by_id.get(parent.get("resumed_from"))
    return start


def resume_actions(
    hosts: Sequence[Host],
    record: dict[str, Any] | None,
    latest_run: Callable[[Host], LatestRun | tuple[str, str] | None] | None = None,
    since_ns: int | None = None,
) -> dict[str, ResumeAction]:
    """Decide per host what ``--resume`` on a group does.

    With a fleet record of the previous group run: a host is skipped exactly when that
    run finished it ok; a host whose run started there and did not finish (including
    ``running``: deployer was killed) resumes that run; a host that never started
    starts. For a host the record has as ``pending`` (its run had not started, or the
    record update was lost) or does not know (added to the group since),
    ``latest_run(host)`` (the newest run of this runbook on it) counts only if that run
    started or resumed at or after ``since_ns`` (default: the record's start; see
    ``deployment_start_ns``): an older run, however successful, is not this
    deployment, so the host starts.

    Without a record, the newest run decides on its own: ok means skip, unfinished
    means resume, none means start.
    """
    actions: dict[str, ResumeAction] = {}
    entries = (record or {}).get("hosts", {})
    fleet_id = (record or {}).get("id")
    if record is not None and since_ns is None:
        since_ns = int(record.get("started_ns") or 0)
    for host in hosts:
        entry = entries.get(host.name)
        if entry is not None and entry.get("status") not in (None, "pending"):
            status, run_id = entry.get("status"), entry.get("run_id")
            if status in SUCCESS_STATUSES:
                actions[host.name] = ResumeAction(
                    "skip", run_id, f"finished ok in {fleet_id}"
                    + (f" (run {run_id})" if run_id else ""))
            elif status == NOT_STARTED or not run_id:
                actions[host.name] = ResumeAction(
                    "start", None, f"{status.replace('_', ' ')} in {fleet_id}")
            elif entry.get("rolled_back_for"):
                # Its run had finished; continuing it would redo only the undone steps
                # and skip those with nothing to undo (a restart, a check): deploy anew.
                actions[host.name] = ResumeAction(
                    "start", None, f"rolled back in {fleet_id} because "
                    f"{', '.join(entry['rolled_back_for'])} failed")
            elif status == "running":
                actions[host.name] = ResumeAction(
                    "resume", run_id, f"run {run_id} did not finish in {fleet_id}")
            else:
                actions[host.name] = ResumeAction(
                    "resume", run_id, f"{status.replace('_', ' ')} in run {run_id}")
            continue
        found = latest_run(host) if latest_run is not None else None
        if isinstance(found, tuple):
            found = LatestRun(*found)
        if found is not None and record is not None and found.active_ns < (since_ns or 0):
            actions[host.name] = ResumeAction(
                "start", None, f"not started in {fleet_id} (run {found.run_id} is older)")
        elif found is None:
            actions[host.name] = ResumeAction(
                "start", None, f"not started in {fleet_id}" if record is not None
                else "no earlier run")
        elif found.status == OK:
            actions[host.name] = ResumeAction("skip", found.run_id,
                                              f"run {found.run_id} finished ok")
        else:
            actions[host.name] = ResumeAction("resume", found.run_id,
                                              f"run {found.run_id} ended {found.status}")
    return actions


def skipped_outcome(host: Host, action: ResumeAction) -> HostOutcome:
    """The reported outcome of a host ``--resume`` does not run."""
    return HostOutcome(host=host.name, address=host.address, status=SKIPPED,
                       exit_code=EXIT_OK, run_id=action.run_id,
                       message=f"already done: {action.reason}")


__all__ = ["LatestRun", "ResumeAction", "deployment_start_ns", "resume_actions",
           "skipped_outcome"]
