"""`run` step kind: a bash script on the host (``bash -e -o pipefail``).

The command is used as written (after Jinja rendering): it is the user's shell code,
so values inserted into it should go through the ``quote`` filter
(``rm -rf {{ release_dir | quote }}``). The transport delivers the script over the
SSH channel's stdin, so nothing of it shows in the host's ``ps``.
"""

from __future__ import annotations

from deployer.commands import Command, RemoteCommand
from deployer.models import Step, StepBody
from deployer.steps._options import Options, exec_fields
from deployer.steps.base import FieldSpec, RenderContext, StepKind

FIELDS: dict[str, FieldSpec] = {
    "command": FieldSpec(
        "string",
        "Bash script run on the host with `set -e -o pipefail` (multi-line allowed). "
        "`run: \"cmd\"` is shorthand for `run: {command: \"cmd\"}`. Insert variables with "
        "`{{ name | quote }}` so spaces and quotes cannot break the command. Runs in the "
        "step's `cwd`, with its `env`, as root when `sudo: true`.",
        required=True,
    ),
}


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("run", FIELDS, body, ctx)
    script = opts.str("command", required=True) or ""
    if not script.strip():
        raise opts.error("command", "`command` is empty", hint="write the shell command to run")
    return [RemoteCommand(script=script, label="run", **exec_fields(body, ctx))]


KIND = StepKind(
    name="run",
    doc="Run a bash script on the host (`bash -e -o pipefail`; a failing command or "
        "pipe stage fails the step).",
    fields=FIELDS,
    build=build,
    shorthand="command",
)
