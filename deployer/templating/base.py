"""What every part of a ``StepContext`` shares: the attributes its constructor sets
(``deployer.templating.context``), declared once for the mixins that read them."""

from __future__ import annotations

from typing import Any

from deployer.jinjasandbox import SandboxedEnvironment
from deployer.models import Host, Runbook, Step
from deployer.steps.base import RenderContext
from deployer.templating.lazyvars import LazyVars


class ContextBase(RenderContext):
    """The state of a render context for one host and (optionally) one step."""

    runbook: Runbook
    host: Host
    step: Step | None
    # "rollback." while the planner builds the step's rollback body, so errors name
    # `rollback.run.command` instead of the step's own `run.command`
    field_prefix: str
    planning: bool
    project_dir: str
    secrets: dict[str, str]
    env: SandboxedEnvironment
    pending_captures: set[str]  # captures not made yet (a plan): they render as placeholders
    _raw: dict[str, Any]  # the variables as written (captures included)
    _names: LazyVars  # every name a template sees (variables, globals, host, secrets...)
    _stood_in: set[str]  # facts rendered with their stand-in

    def _render_var(self, value: Any, where: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError
