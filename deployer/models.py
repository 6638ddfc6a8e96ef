"""Plain data for loaded runbooks and hosts, shared by planner, executor and CLI.

These are built by ``runbook.py`` and ``inventory.py`` after validation, so code that
receives them can trust their types. String fields are still raw Jinja templates;
``templating.py`` renders them per host at plan/run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployer.errors import Position

IRREVERSIBLE = "irreversible"


@dataclass
class StepBody:
    """The kind-specific part of a step (``run: ...``, ``psql: {...}``) plus execution
    fields that a rollback body may also set."""

    kind: str
    options: dict[str, Any]  # kind options after shorthand expansion, unrendered
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    sudo: bool = False
    timeout: float | None = None
    position: Position | None = None


@dataclass
class Step:
    """One validated step of a runbook (includes already expanded)."""

    id: str
    name: str
    body: StepBody
    when: str | None = None
    retries: int = 0
    delay: float = 0.0
    destructive: bool = False
    confirm: bool | str = False  # True or a question to ask
    rollback: StepBody | str | None = None  # a body, IRREVERSIBLE, or None
    capture: str | None = None
    skip_if: str | None = None
    check: str | None = None  # read-only probe: exit 0 = the step's effect is still there
    on_failure: str | None = None  # "rollback" | "stop" | "continue"; None = runbook's
    runbook: str = ""  # runbook file the step came from (for error messages)
    position: Position | None = None
    scope_vars: dict[str, Any] = field(default_factory=dict)  # vars from include

    @property
    def kind(self) -> str:
        return self.body.kind

    def definition_digest(self) -> str:
        """A short hash of what the step does as written (unrendered, so it holds no
        secret; positions left out, so editing another step does not change it)."""
        import hashlib
        import json

        def body(b: StepBody | str | None) -> Any:
            if not isinstance(b, StepBody):
                return b
            return [b.kind, b.options, b.cwd, b.env, b.sudo, b.timeout]

        what = [self.name, body(self.body), self.when, self.retries, self.delay,
                self.destructive, self.confirm, body(self.rollback), self.capture,
                self.skip_if, self.on_failure, self.scope_vars]
        if self.check:  # only when set: records made before `check` keep their digests
            what.append(["check", self.check])
        text = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def irreversible(self) -> bool:
        """Destructive with no way back."""
        return self.destructive and (self.rollback is None or self.rollback == IRREVERSIBLE)


@dataclass
class Runbook:
    name: str
    path: str
    description: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    on_failure: str = "rollback"
    lock: bool = True
    fleet_rollback: str = "host"  # "host" | "all": what a failed host rolls back in a fleet
    included_files: list[str] = field(default_factory=list)  # for digests
    template_files: list[str] = field(default_factory=list)  # for digests
    description_position: Position | None = None  # for errors met rendering it


@dataclass
class Host:
    """A target host from the inventory, with its merged variables."""

    name: str
    address: str
    user: str | None = None
    port: int = 22
    identity_file: str | None = None
    known_hosts: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)  # defaults < groups < host
    connect_timeout: float = 10.0
    ssh_config_alias: bool = False  # address resolved through ~/.ssh/config

    def label(self) -> str:
        return self.name
