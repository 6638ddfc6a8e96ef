"""What ``deployer status`` reports, as data: the containers of a host's stack, the lock,
the last recorded run, and one verdict. Pure: the probes' output comes in, values come
out; deployer/operate.py gathers, deployer/cli/status.py renders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

HEALTHY = "healthy"
DEGRADED = "degraded"
DOWN = "down"
UNKNOWN = "unknown"  # the host could not be reached


@dataclass(frozen=True)
class Container:
    service: str
    name: str
    state: str  # the engine's: running, exited, restarting, created, paused, dead
    health: str | None  # healthy, unhealthy, starting; None without a healthcheck
    image: str
    image_id: str
    started: str
    restarts: int
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in (None, "healthy")

    @property
    def problem(self) -> str | None:
        """Why this container is not serving, in words; None when it is."""
        if self.ok:
            return None
        if self.state == "running":
            return f"{self.health}"
        if self.state == "exited":
            return f"exited with code {self.exit_code}"
        if self.state == "restarting":
            return f"restarting (restarted {self.restarts} times)"
        return self.state


def parse_containers(stdout: str) -> list[Container]:
    """The JSON lines of ``steps.compose.containers_command``; other lines (a login
    banner, compose warnings on stdout) are not containers and are skipped."""
    found: list[Container] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        found.append(Container(
            service=str(d.get("service") or ""), name=str(d.get("name") or "").lstrip("/"),
            state=str(d.get("state") or ""), health=d.get("health") or None,
            image=str(d.get("image") or ""), image_id=str(d.get("image_id") or ""),
            started=str(d.get("started") or ""), restarts=int(d.get("restarts") or 0),
            exit_code=int(d.get("exit_code") or 0)))
    return sorted(found, key=lambda c: (c.service, c.name))


@dataclass
class HostStatus:
    host: str
    address: str
    containers: list[Container] = field(default_factory=list)
    lock_held: bool = False
    lock_holder: dict[str, Any] | None = None
    last_run: dict[str, Any] | None = None  # id, runbook, status, finished, operator
    last_run_source: str = "checkout"  # "host" when read from the host's state directory
    release: dict[str, Any] | None = None  # the last release recorded on the host
    error: str | None = None  # the host could not be asked

    @property
    def drift(self) -> list[str]:
        """Services whose running image is not the one the last release recorded."""
        if not self.release:
            return []
        recorded = self.release.get("images") or {}
        return sorted(c.service for c in self.containers
                      if c.service in recorded and c.state == "running"
                      and not str(recorded[c.service]).startswith(c.image_id))

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return UNKNOWN
        if not any(c.state == "running" for c in self.containers):
            return DOWN
        return HEALTHY if all(c.ok for c in self.containers) else DEGRADED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        data["drift"] = self.drift
        for c, raw in zip(self.containers, data["containers"], strict=True):
            raw["ok"] = c.ok
            raw["problem"] = c.problem
        return data


def last_run_summary(record: Any) -> dict[str, Any] | None:
    """The fields of a run record that status shows (no variables, no output)."""
    if record is None:
        return None
    return {"id": record.id, "runbook": record.runbook, "status": record.status,
            "started": record.started, "finished": record.finished,
            "operator": record.operator, "failed_step": record.failed_step}


def exit_code(statuses: list[HostStatus]) -> int:
    """0 when every host is healthy, 1 when a stack is degraded or down, 3 when a host
    could not be reached (the worst wins)."""
    verdicts = {s.verdict for s in statuses}
    if UNKNOWN in verdicts:
        return 3
    return 0 if verdicts <= {HEALTHY} else 1
