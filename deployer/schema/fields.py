"""The field tables of the runbook and inventory formats: every field a ``FieldSpec``
(the type the step kinds use too), so validation, ``deployer schema`` and
docs/runbooks.md come from one source; plus the kinds' own option tables.

Besides the kind field types, specs here use:

    "vars"            a mapping of variable names to any values
    "boolean|string"  ``true``/``false`` or a text (``confirm`` question, ``when``)
    "steps"           the list of steps (validated by ``structure.validate_step``)
    "rollback"        ``irreversible`` or a step body (a kind key plus cwd/env/sudo/timeout)
    "object:NAME"     a nested mapping described by ``SPECS[NAME]``
    "map:NAME"        a mapping of free names to ``SPECS[NAME]`` objects
"""

from __future__ import annotations

import re

from deployer.steps.base import FieldSpec

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # variable, secret and capture names

RUNBOOK_FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec("string", "Runbook name shown in plans and history (default: the file "
                      "name without extension).", template=False),
    "description": FieldSpec("string", "What the runbook does, shown in plans (rendered per "
                             "host; the plan's header shows the first host's).",
                             template=True),
    "vars": FieldSpec("vars", "Default variables, the lowest precedence: inventory, "
                      "`--vars-file` and `--var` override them.", default={}),
    "secrets": FieldSpec("list[string]", "Names of the secrets the runbook needs; each must "
                         "be provided (env `DEPLOYER_SECRET_<NAME>`, `--secrets-file` or the "
                         "inventory) before anything runs. Use as `{{ secrets.NAME }}`.",
                         default=[], template=False),
    "on_failure": FieldSpec("choice", "What to do when a step fails: roll back the completed "
                            "steps in reverse order, or stop and leave the host as it is.",
                            default="rollback", choices=("rollback", "stop"), template=False),
    "lock": FieldSpec("boolean", "Take the host's deploy lock for the run so two runs never "
                      "overlap.", default=True, template=False),
    "fleet_rollback": FieldSpec("choice", "In a run on several hosts, what a failure rolls "
                                "back: only the failed host (`host`), or also every host "
                                "that finished ok in the same fleet run (`all`), once the "
                                "failure stops the fleet (`--max-fail`, default: the first "
                                "failure). Each host undoes its own run, as `deployer "
                                "rollback` would; an irreversible step stops its undo.",
                                default="host", choices=("host", "all"), template=False),
    "steps": FieldSpec("steps", "The steps, run in order.", required=True),
}

STEP_FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec("string", "Unique, stable identifier (`[a-z0-9][a-z0-9_.-]*`). "
                    "Checkpoints, `--from` and `--only` refer to it: do not rename it between "
                    "a failed run and its resume.", required=True, template=False),
    "name": FieldSpec("string", "Human description shown in plans and progress (default: "
                      "the id). Rendered like the body, so it may name variables and "
                      "captured values.", template=True),
    "when": FieldSpec("boolean|string", "Jinja expression (braces optional); the step is "
                      "skipped when it is false.", template=False),
    "retries": FieldSpec("integer", "How many times to retry after a failure.", default=0,
                         template=False),
    "delay": FieldSpec("number", "Seconds to wait between retries.", default=0,
                       template=False),
    "timeout": FieldSpec("number", "Seconds after which the command is killed (on the host, "
                         "not just the local wait).", template=False),
    "cwd": FieldSpec("string", "Working directory of the command."),
    "env": FieldSpec("mapping", "Environment variables for the command (sent over the SSH "
                     "channel, never in argv).", default={}),
    "sudo": FieldSpec("boolean", "Run the command with sudo.", default=False, template=False),
    "destructive": FieldSpec("boolean", "The step destroys data or state; flagged in plans. "
                             "Give it a `rollback` or `confirm`.", default=False,
                             template=False),
    "confirm": FieldSpec("boolean|string", "Ask before running this step (`true` or the "
                         "question to ask); `--yes` answers yes.", default=False),
    "rollback": FieldSpec("rollback", "How to undo the step: a step body (e.g. `run: ...` "
                          "with optional `cwd`, `env`, `sudo`, `timeout`), or `irreversible`. "
                          "Without it the kind's built-in undo is used if it has one "
                          "(upload restores the previous file)."),
    "capture": FieldSpec("string", "Store the step's trimmed stdout in this variable for "
                         "later steps and rollbacks. Plans show `<captured: NAME>`.",
                         template=False),
    "skip_if": FieldSpec("string", "A remote command run first; exit status 0 means the "
                         "work is already done, so the step is skipped."),
    "check": FieldSpec("string", "A read-only remote command that tells whether the step's "
                       "effect is still there (exit status 0: it is). `--resume` runs it for "
                       "steps done earlier in the run: a failing check runs the step, and "
                       "every later step, again."),
    "on_failure": FieldSpec("choice", "Overrides the runbook's `on_failure` for this step; "
                            "`continue` records the failure and goes on.",
                            choices=("rollback", "stop", "continue"), template=False),
}

# Execution fields a rollback body may set next to its kind key.
ROLLBACK_FIELDS: dict[str, FieldSpec] = {
    key: STEP_FIELDS[key] for key in ("cwd", "env", "sudo", "timeout")
}

# Common fields an include step may carry; everything else belongs to included steps.
INCLUDE_STEP_FIELDS = ("id", "name", "when")

HOST_FIELDS: dict[str, FieldSpec] = {
    "host": FieldSpec("string", "Address or DNS name to connect to (default: the host's "
                      "name, which may be an alias from `~/.ssh/config`).", template=False),
    "user": FieldSpec("string", "SSH user.", template=False),
    "port": FieldSpec("integer", "SSH port.", template=False),
    "identity_file": FieldSpec("string", "Private key file.", template=False),
    "known_hosts": FieldSpec("string|list[string]", "Extra known_hosts files, checked "
                             "besides `~/.ssh/known_hosts`.", template=False),
    "connect_timeout": FieldSpec("number", "Seconds to wait for the SSH connection.",
                                 template=False),
    "vars": FieldSpec("vars", "Host variables (override group and default vars).",
                      default={}),
    "groups": FieldSpec("list[string]", "Groups the host belongs to; their vars apply in "
                        "this order, later ones winning.", default=[], template=False),
}

DEFAULTS_FIELDS: dict[str, FieldSpec] = {
    key: HOST_FIELDS[key]
    for key in ("user", "port", "identity_file", "known_hosts", "connect_timeout", "vars")
}

GROUP_FIELDS: dict[str, FieldSpec] = {
    "vars": FieldSpec("vars", "Variables of every host in the group.", default={}),
    "hosts": FieldSpec("list[string]", "Hosts in the group (in addition to hosts that list "
                       "the group).", default=[], template=False),
}

SECRET_SOURCE_FIELDS: dict[str, FieldSpec] = {
    "command": FieldSpec("string", "Local command whose stdout (trailing newline removed) is "
                         "the secret, e.g. `pass show app/db`.", required=True, template=False),
}

INVENTORY_FIELDS: dict[str, FieldSpec] = {
    "default_host": FieldSpec("string", "Host or group used when `--host` is not given.",
                              template=False),
    "defaults": FieldSpec("object:defaults", "Settings every host inherits.", default={}),
    "hosts": FieldSpec("map:host", "Hosts by name.", required=True),
    "groups": FieldSpec("map:group", "Groups by name.", default={}),
    "secrets": FieldSpec("map:secret", "Where to fetch secrets that are not in the "
                         "environment or `--secrets-file`.", default={}),
}

SPECS: dict[str, dict[str, FieldSpec]] = {
    "runbook": RUNBOOK_FIELDS,
    "step": STEP_FIELDS,
    "rollback": ROLLBACK_FIELDS,
    "host": HOST_FIELDS,
    "defaults": DEFAULTS_FIELDS,
    "group": GROUP_FIELDS,
    "secret": SECRET_SOURCE_FIELDS,
    "inventory": INVENTORY_FIELDS,
}

# Bounds the type alone cannot express: name -> (minimum, exclusive).
BOUNDS: dict[str, tuple[float, bool]] = {
    "retries": (0, False),
    "delay": (0, False),
    "timeout": (0, True),
    "port": (1, False),
    "connect_timeout": (0, True),
}


def kind_specs() -> dict[str, dict[str, FieldSpec]]:
    """Option specs of every kind (include too), by kind name."""
    from deployer.steps import INCLUDE_FIELDS, registry

    specs = {name: kind.fields for name, kind in registry().items()}
    specs["include"] = INCLUDE_FIELDS
    return specs


def kind_shorthand(kind: str) -> str | None:
    """The option a plain string value of ``kind`` maps to."""
    if kind == "include":
        return "runbook"
    from deployer.steps import registry

    return registry()[kind].shorthand

