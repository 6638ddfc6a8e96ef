"""Fleet records: ``.deployer/fleets/<id>.json``, which hosts of a group run finished
how, so ``--resume`` on a group picks exactly the hosts that did not finish."""

from __future__ import annotations

import getpass
import json
import os
import secrets as _secrets
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import FleetOutcome, HostOutcome


def _atomic_write_json(path: Path, data: dict[str, Any], durable: bool = True) -> None:
    """Write-then-rename, so readers and a killed deployer only ever see a whole file.
    ``durable`` adds an fsync (power loss); per-host updates skip it because 50 hosts
    finishing together would queue 50 journal commits on the scheduling thread, and a
    lost update only makes ``--resume`` fall back to the per-host run history."""
    from deployer.state import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True), durable=durable)


def fleets_dir(project_dir: str | os.PathLike[str]) -> Path:
    return Path(project_dir) / ".deployer" / "fleets"


class FleetRecord:
    """``.deployer/fleets/<id>.json``: which hosts of a group run finished how.

    Small (one entry per host) and rewritten atomically when a host's run starts
    (``running`` with its run id) and when it ends, so a killed deployer leaves a valid
    record for ``--resume`` that tells hosts it had started from hosts it never reached.
    Holds no output and no secrets.
    """

    def __init__(self, project_dir: str | os.PathLike[str], runbook: str, target: str,
                 hosts: Sequence[str], resumed_from: str | None = None) -> None:
        now_ns = time.time_ns()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now_ns / 1e9))
        # Microseconds in the id keep records of quick successive runs ordered.
        self.id = f"fleet-{stamp}.{now_ns // 1000 % 1_000_000:06d}-{_secrets.token_hex(2)}"
        self.path = fleets_dir(project_dir) / f"{self.id}.json"
        self._lock = threading.Lock()
        try:
            operator = f"{getpass.getuser()}@{socket.gethostname()}"
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            operator = f"uid{os.getuid()}@{socket.gethostname()}"
        self.data: dict[str, Any] = {
            "id": self.id,
            "runbook": runbook,
            "target": target,
            "operator": operator,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)),
            "started_ns": now_ns,
            "finished": None,
            "status": "running",
            "resumed_from": resumed_from,
            "hosts": {name: {"status": "pending", "exit_code": None, "run_id": None,
                             "failed_step": None} for name in hosts},
        }
        self._save()

    def _save(self, durable: bool = True) -> None:
        _atomic_write_json(self.path, self.data, durable)

    def update(self, outcome: HostOutcome) -> None:
        with self._lock:
            entry = self.data["hosts"].setdefault(outcome.host, {})
            entry.update(status=outcome.status, exit_code=outcome.exit_code,
                         run_id=outcome.run_id, failed_step=outcome.failed_step)
            if outcome.rolled_back_for:
                entry["rolled_back_for"] = list(outcome.rolled_back_for)
            self._save(durable=False)

    def mark_running(self, host: str, run_id: str) -> None:
        """The host's run ``run_id`` has started (its run record exists)."""
        with self._lock:
            entry = self.data["hosts"].setdefault(host, {})
            entry.update(status="running", run_id=run_id)
            self._save(durable=False)

    def finish(self, outcome: FleetOutcome) -> None:
        with self._lock:
            if outcome.fleet_rollback:
                self.data["fleet_rollback"] = outcome.fleet_rollback
            self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.data["exit_code"] = outcome.exit_code
            self.data["status"] = "ok" if outcome.ok else (
                "interrupted" if outcome.interrupted else "failed")
            self._save()


def load_fleet_records(project_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every readable fleet record, oldest first (unreadable files are ignored: a
    half-written temp file is never named ``*.json``, so this only skips foreign junk)."""
    out: list[dict[str, Any]] = []
    folder = fleets_dir(project_dir)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("fleet-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("hosts"), dict):
            out.append(data)
    out.sort(key=lambda d: (d.get("started_ns") or 0, d.get("id") or ""))
    return out


def latest_fleet_record(project_dir: str | os.PathLike[str], runbook: str,
                        target: str) -> dict[str, Any] | None:
    """The most recent record of ``runbook`` run on ``target`` (group or host list)."""
    for data in reversed(load_fleet_records(project_dir)):
        if data.get("runbook") == runbook and data.get("target") == target:
            return data
    return None


__all__ = ["FleetRecord", "fleets_dir", "latest_fleet_record", "load_fleet_records"]
