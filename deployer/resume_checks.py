"""A resume's look at the host: the ``check`` probes of the steps done earlier.

``resume_plan`` decides what a ``--resume`` runs again (pure); what it needs from the
host is whether the effect of each step done earlier is still there. ``ResumeChecks``
runs those steps' ``check`` probes in order, up to the first that fails (every later
step runs again anyway), read-only and kept out of the progress like a ``skip_if``
probe. Anything but exit 0 counts as failed: a step whose effect cannot be confirmed
runs again. Nothing of the resume is recorded yet, so an interrupt here is a plain
``KeyboardInterrupt``.
"""

from __future__ import annotations

from deployer import captures as captures_mod
from deployer import resume_plan
from deployer.command_runner import CommandRunner, Interrupted
from deployer.errors import DeployerError
from deployer.perform import Result
from deployer.run_output import RunOutput
from deployer.run_setup import RunSetup
from deployer.selection import Selection
from deployer.state import RunRecord
from deployer.step_render import StepRenderer

DETAIL_CHARS = 200  # of a failed check's last output line, in the resume's notice


class ResumeChecks:
    """Runs the checks a resume of one run asks for."""

    def __init__(self, setup: RunSetup, renderer: StepRenderer, runner: CommandRunner,
                 output: RunOutput) -> None:
        self.setup = setup
        self.renderer = renderer
        self.runner = runner
        self.output = output

    def plan(self, prev: RunRecord, selection: Selection) -> resume_plan.ResumePlan:
        """What resuming ``prev`` runs again, after running the checks it depends on."""
        past = self.setup.past(prev, selection)
        results: dict[str, resume_plan.CheckOutcome] = {}
        probes = resume_plan.checks_to_probe(past)
        if probes:
            self.renderer.use_captures(captures_mod.known_captures(prev))  # checks may name them
        for step_id in probes:
            results[step_id] = self.check(step_id)
            if not results[step_id].passed:
                break  # every later step runs again anyway
        return resume_plan.plan_resume(past, results)

    def check(self, step_id: str) -> resume_plan.CheckOutcome:
        """Run the ``check`` of the done step ``step_id`` on the host."""
        step = self.renderer.step(step_id)
        mask = self.output.mask
        self.output.start(f"{step.id}:check")
        try:
            planned = self.renderer.render(step)
        except DeployerError as exc:
            return resume_plan.CheckOutcome(False, mask(f"cannot render it: {exc}"))
        if planned.check is None:
            return resume_plan.CheckOutcome(
                False, f"its when is now false: {mask(planned.skip_reason)}")
        try:
            with self.output.quiet():
                result = self.runner.perform_all([planned.check], planned.check.timeout)
        except Interrupted:
            raise KeyboardInterrupt from None  # nothing of this resume is recorded yet
        if result.ok:
            return resume_plan.CheckOutcome(True)
        return resume_plan.CheckOutcome(False, self.detail(result))

    def detail(self, result: Result) -> str:
        """Why a check failed, with its last line of output (already masked)."""
        if result.timed_out:
            detail = "timed out"
        elif result.exit_code is not None:
            detail = f"exit {result.exit_code}"
        else:
            detail = self.output.mask(result.message) or "it did not run"
        last = self.output.last_line()
        if last:
            detail += f": {last[:DETAIL_CHARS]}"
        return detail


__all__ = ["ResumeChecks"]
