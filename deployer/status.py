"""What ``deployer status`` reports, as data: the containers of a host's stack, the lock,
the last recorded run, and one verdict. Pure: the probes' output comes in, values come
out; deployer/operate.py gathers, deployer/cli/status.py renders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

HEALTHY = "healthy"
DEGRADED = "degraded"
DOWN = "down"
UNKNOWN = "unknown"  # the host could not be reached
SLOTS = ("blue", "green")  # the zero-downtime slots (runbooks/parts/zero-downtime.yml)
LIVE_MARK = "@@live "  # the probe's line naming the slot the proxy serves


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
    project: str = ""  # its compose project (a slot's is <project>-blue / -green)
    restart_policy: str = "unknown"  # the engine's: "" or no, always, unless-stopped, ...
    must_run: bool = False  # a service meant to keep running (the api): exit 0 is down too

    @property
    def slot(self) -> str:
        """``blue`` or ``green`` for a zero-downtime slot's container, else ``""``."""
        head, _, tail = self.project.rpartition("-")
        return tail if head and tail in SLOTS else ""

    @property
    def completed(self) -> bool:
        """A one-shot job that ended well (a prestart/migration service with no restart
        policy, exit 0): nothing to report, unlike a service that stopped."""
        # Compose v2 leaves the policy name empty for a service without `restart:`.
        return self.state == "exited" and self.exit_code == 0 \
            and self.restart_policy in ("", "no") and not self.must_run

    @property
    def ok(self) -> bool:
        return (self.state == "running" and self.health in (None, "healthy")) or self.completed

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


def parse_live_slot(stdout: str) -> str | None:
    """The slot the proxy serves as the probe printed it (``blue``, ``green`` or
    ``none``); None when the stack has no proxy (the probe did not look)."""
    for line in stdout.splitlines():
        if line.startswith(LIVE_MARK):
            value = line[len(LIVE_MARK):].strip()
            return value if value in SLOTS else "none"
    return None


def parse_containers(stdout: str, must_run: Iterable[str] = ()) -> list[Container]:
    """The JSON lines of ``steps.compose.containers_command``; other lines (a login
    banner, compose warnings on stdout) are not containers and are skipped. The services
    in ``must_run`` (the api) are never a finished one-shot job."""
    keep = set(must_run)
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
            exit_code=int(d.get("exit_code") or 0), project=str(d.get("project") or ""),
            # a probe that did not say (older output) is never a finished job
            restart_policy=str(d["restart_policy"] or "") if "restart_policy" in d
            else "unknown",
            must_run=str(d.get("service") or "") in keep))
    return sorted(found, key=lambda c: (c.service, c.slot, c.name))


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
    live_slot: str | None = None  # blue, green or none behind a proxy; None without one

    def role(self, c: Container) -> str:
        """``live`` or ``idle`` for a slot's container; ``replaced`` for the main
        project's copy of a service a live slot serves now; else ``""``."""
        if c.slot:
            return "live" if c.slot == self.live_slot else "idle"
        slotted = {x.service for x in self.containers if x.slot}
        if self.live_slot in SLOTS and c.service in slotted:
            return "replaced"
        return ""

    @property
    def serving(self) -> list[Container]:
        """The containers the verdict is about: behind a proxy, the live slot's and not
        the idle slot (the stopped previous release, kept for rollback) nor the main
        project's copy of the service the slots run."""
        return [c for c in self.containers if self.role(c) in ("", "live")]

    @property
    def drift(self) -> list[str]:
        """Services whose running image is not the one the last release recorded."""
        if not self.release:
            return []
        recorded = self.release.get("images") or {}
        return sorted(c.service for c in self.serving
                      if c.service in recorded and c.state == "running"
                      and not str(recorded[c.service]).startswith(c.image_id))

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return UNKNOWN
        serving = self.serving
        if not any(c.state == "running" for c in serving):
            return DOWN
        return HEALTHY if all(c.ok for c in serving) else DEGRADED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        data["drift"] = self.drift
        for c, raw in zip(self.containers, data["containers"], strict=True):
            raw["ok"] = c.ok
            raw["problem"] = c.problem
            raw["slot"] = c.slot
            raw["role"] = self.role(c)
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
