"""``StepContext``, the one ``RenderContext`` plan, run, undo and doctor render with:
the names a template sees for one host and (optionally) one step, put together here;
what the context does with them lives in the mixins it is made of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deployer.models import Host, Runbook, Step
from deployer.templating.files import Files
from deployer.templating.hostfacts import HostFacts
from deployer.templating.jinjaenv import environment
from deployer.templating.lazyvars import LazyVars
from deployer.templating.placeholders import capture_names, captured_placeholder
from deployer.templating.when import When

RESERVED = ("secrets", "host", "runbook")


def _raw_values(variables: Mapping[str, Any], step: Step | None, pending: set[str],
                captured: Mapping[str, Any]) -> dict[str, Any]:
    """The variables as written, lowest precedence first: merged variables, the scope
    vars of an included step (below ``--var``), placeholders, captured values."""
    raw: dict[str, Any] = dict(variables)
    if step is not None and step.scope_vars:
        cli_keys: frozenset[str] = getattr(variables, "cli_keys", frozenset())
        for key, value in step.scope_vars.items():
            if key not in cli_keys:
                raw[key] = value
    for name in pending:
        raw[name] = captured_placeholder(name)
    raw.update(captured)
    return raw


class StepContext(When, Files, HostFacts):
    """Renders values for one host and (optionally) one step."""

    def __init__(self, runbook: Runbook, host: Host, variables: Mapping[str, Any],
                 secrets: Mapping[str, str], captured: Mapping[str, Any],
                 step: Step | None = None, planning: bool = False,
                 project_dir: str = ".") -> None:
        self.runbook = runbook
        self.host = host
        self.step = step
        self.field_prefix = ""
        self.planning = planning
        self.project_dir = project_dir
        self.secrets = dict(secrets)
        self.env = environment(project_dir)
        self.pending_captures = set()
        if planning:
            self.pending_captures = {c for c in capture_names(runbook) if c not in captured}
        raw = _raw_values(variables, step, self.pending_captures, captured)
        self._raw = raw
        self.vars = LazyVars(raw, self._render_var)
        self._names = self._template_names(raw)
        self._stood_in = set()

    def _template_names(self, raw: dict[str, Any]) -> LazyVars:
        """Every name a template sees: the variables (rendered lazily), the
        environment's globals unless a variable shadows them, and the reserved names."""
        names = LazyVars(raw, self._render_var)
        for key, value in self.env.globals.items():
            if key not in raw:
                names.set_done(key, value)
        host, runbook = self.host, self.runbook
        reserved = {
            "secrets": self.secrets,
            "host": {"name": host.name, "address": host.address, "user": host.user,
                     "port": host.port, "groups": list(host.groups)},
            "runbook": {"name": runbook.name, "description": runbook.description},
        }
        for key, value in reserved.items():
            names.set_done(key, value)
        # Names a template asked for (Jinja tests `name in context` before reading it),
        # kept so the planner can tell when a value it showed comes from a default.
        names.looked_up = set()
        return names


def make_context(runbook: Runbook, host: Host, variables: Mapping[str, Any], secrets: dict,
                 captured: dict, step: Step | None = None, planning: bool = False,
                 project_dir: str = ".") -> StepContext:
    """The ``RenderContext`` for rendering ``step`` (or runbook-level values) on ``host``."""
    return StepContext(runbook, host, variables, secrets, captured, step, planning,
                       project_dir)
