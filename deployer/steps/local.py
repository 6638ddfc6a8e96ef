"""`local` step kind: a shell command on the operator's machine.

Useful for building assets or running tests before shipping them. The executor runs it
with the project directory as default working directory; it needs no SSH connection.
"""

from __future__ import annotations

from deployer.commands import Command, LocalCommand
from deployer.errors import InputError, Problem
from deployer.models import Step, StepBody
from deployer.steps._options import Options, exec_fields
from deployer.steps.base import FieldSpec, RenderContext, StepKind

FIELDS: dict[str, FieldSpec] = {
    "command": FieldSpec(
        "string",
        "Shell command run on the operator's machine (not the host). "
        "`local: \"cmd\"` is shorthand for `local: {command: \"cmd\"}`. Relative paths are "
        "relative to the step's `cwd`, or to the project directory. `sudo` is not "
        "supported here.",
        required=True,
    ),
}


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("local", FIELDS, body, ctx)
    command = opts.str("command", required=True) or ""
    if not command.strip():
        raise opts.error("command", "`command` is empty", hint="write the command to run")
    fields = exec_fields(body, ctx)
    if fields["sudo"]:
        raise InputError(Problem("local steps cannot use `sudo`", position=body.position,
                                 path="local", hint="use a `run` step to act as root on the "
                                 "host, or put sudo inside the command"))
    return [LocalCommand(command=command, cwd=fields["cwd"], env=fields["env"],
                         timeout=fields["timeout"])]


KIND = StepKind(
    name="local",
    doc="Run a shell command on the operator's machine (for example a frontend build "
        "or tests before shipping).",
    fields=FIELDS,
    build=build,
    shorthand="command",
    remote=False,
)
