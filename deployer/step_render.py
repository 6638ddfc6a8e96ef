"""Renders a runbook's steps at run time, with the values the run has so far.

The same ``planner.render_step`` as ``deployer plan``, given the host's variables, the
secrets and the values captured by the steps before: the step itself, its undo and
its resume ``check`` all come from here. ``captured`` is the run's one mapping of
captured values, filled as steps capture and replaced when a record is resumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deployer.errors import DeployerError
from deployer.models import Host, Runbook, Step

if TYPE_CHECKING:
    from deployer.planner import PlannedStep
    from deployer.templating import StepContext


class StepRenderer:
    """Renders the steps of ``runbook`` for ``host``. ``variables`` is the run's own
    mapping: what host facts and reused ``--var`` values add to it is seen here."""

    def __init__(self, runbook: Runbook, host: Host, variables: dict[str, Any],
                 secrets: dict[str, str], project_dir: str) -> None:
        self.runbook = runbook
        self.host = host
        self.variables = variables
        self.secrets = secrets
        self.project_dir = project_dir
        self.captured: dict[str, str] = {}
        self._by_id = {s.id: (i, s) for i, s in enumerate(runbook.steps)}

    def find(self, step_id: str) -> tuple[int, Step] | None:
        """The index and step of ``step_id``, or ``None`` if the runbook lost it."""
        return self._by_id.get(step_id)

    def step(self, step_id: str) -> Step:
        """The step ``step_id`` (``KeyError`` if the runbook has none)."""
        return self._by_id[step_id][1]

    def use_captures(self, values: Mapping[str, str]) -> None:
        """From now on the captured values are ``values`` (a record's)."""
        self.captured.clear()
        self.captured.update(values)

    def context(self, step: Step, before_capture: bool = False) -> StepContext:
        # Loaded on first use: importing the executor does not load Jinja.
        from deployer.templating import captured_placeholder, make_context

        captured = self.captured
        if before_capture and step.capture and step.capture not in captured:
            # The step's own rollback may name the value it is about to capture; the
            # undo is rendered again, with the real value, when it runs.
            captured = {**captured, step.capture: captured_placeholder(step.capture)}
        return make_context(self.runbook, self.host, self.variables, self.secrets,
                            captured, step=step, planning=False,
                            project_dir=self.project_dir)

    def render(self, step: Step, *, before_capture: bool = False,
               render_skipped: bool = False) -> PlannedStep:
        """``step`` rendered now (``DeployerError`` when it cannot be)."""
        from deployer.planner import render_step

        index = self._by_id[step.id][0]
        return render_step(step, index + 1, self.context(step, before_capture),
                           render_skipped=render_skipped)

    def may_run(self, step: Step) -> bool:
        """False only when the step's `when` is already known to be false on this host
        (as the plan shows it skipped); a `when` on a value not captured yet may be true."""
        if step.when is None:
            return True
        from deployer.planner import decide_when
        from deployer.templating import make_context

        ctx = make_context(self.runbook, self.host, self.variables, self.secrets,
                           self.captured, step=step, planning=True,
                           project_dir=self.project_dir)
        try:
            return not decide_when(step, ctx)[0]
        except DeployerError:
            return True


__all__ = ["StepRenderer"]
