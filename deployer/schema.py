"""Declarative specs of the runbook and inventory formats, their validation, JSON Schema.

Every field is a ``FieldSpec`` (from ``steps/base.py``, the same type the step kinds
use), so validation, ``deployer schema`` and docs/runbooks.md come from one source.
Besides the kind field types, specs here use:

    "vars"            a mapping of variable names to any values
    "boolean|string"  ``true``/``false`` or a text (``confirm`` question, ``when``)
    "steps"           the list of steps (validated by ``validate_step``)
    "rollback"        ``irreversible`` or a step body (a kind key plus cwd/env/sudo/timeout)
    "object:NAME"     a nested mapping described by ``SPECS[NAME]``
    "map:NAME"        a mapping of free names to ``SPECS[NAME]`` objects

Validation never stops at the first problem: it returns every ``Problem`` with the
position of the offending key or value and a path such as ``steps[2].retries``.
Unknown keys get a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from deployer.errors import Problem
from deployer.models import IRREVERSIBLE
from deployer.steps.base import FieldSpec
from deployer.yamlsrc import BoolWord, Node

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

INVALID = object()  # marks a value that failed validation


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


def suggest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    """'did you mean ...' hint for an unknown name, or a list of the valid ones."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return "valid: " + ", ".join(sorted(str(c) for c in candidates))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        short = value if len(value) <= 30 else value[:27] + "..."
        return f"a string ({short!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _scalar_str(node: Node) -> str | None:
    """The text of a scalar where text is expected: exactly as written for a bare one
    (``port: 5432`` or ``debug: True`` in env give ``5432`` and ``True``)."""
    value = node.value
    if isinstance(value, str):
        return str(value)  # a BoolWord becomes plain text
    if isinstance(value, (bool, int, float)):
        if node.text is not None:
            return node.text
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    return None


# Text a bare number written another way than plain decimal leaves behind (the loader
# keeps `0640`, `22:22`, `0x1F`, `1_000`, `1.50`, `.5` as written).
_NUMBER_LIKE = re.compile(r"[-+]?(?:0[xob][0-9a-fA-F_]+|[0-9][0-9_:]*(?:\.[0-9_]*)?"
                          r"(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)")
_DECIMAL = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|-?[0-9]+[eE][-+]?[0-9]+")


class Checker:
    """Accumulates problems while checking nodes against specs."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, node: Node | None, path: str, message: str, hint: str = "",
              pos: Any = None) -> None:
        self.problems.append(Problem(message, pos or (node.pos if node else None), path, hint))

    def mapping(self, node: Node, fields: dict[str, FieldSpec], path: str,
                extra_keys: tuple[str, ...] = (), what: str = "") -> dict[str, Any]:
        """Check a mapping against ``fields``; returns checked values (INVALID on error).

        Keys in ``extra_keys`` are allowed and returned as raw ``Node``s for the caller.
        """
        if not node.is_mapping:
            self.error(node, path, f"expected a mapping{what}, got {_type_name(node.value)}")
            return {}
        out: dict[str, Any] = {}
        for key, child in node.items():
            kpath = _join(path, str(key))
            if key in fields:
                out[key] = self.value(child, fields[key], kpath, str(key))
            elif key in extra_keys:
                out[key] = child
            else:
                self.error(child, kpath, f"unknown field `{key}`",
                           suggest(str(key), list(fields) + list(extra_keys)),
                           pos=node.key_pos(key))
        for key, spec in fields.items():
            if spec.required and key not in node.value:
                self.error(node, path, f"missing required field `{key}`",
                           f"add `{key}:` ({spec.doc.split('.')[0].lower()})")
        return out

    def value(self, node: Node, spec: FieldSpec, path: str, name: str = "") -> Any:
        """Check one value against a spec; returns the (coerced) plain value or INVALID."""
        v = node.value
        t = spec.type

        def bad(expected: str, hint: str = "") -> Any:
            self.error(node, path, f"expected {expected}, got {_type_name(v)}", hint)
            return INVALID

        if t == "any":
            return node.plain()
        if v is None and not spec.required and t not in ("steps",):
            if t == "string":
                return bad("a string", "write \"\" for an empty string, or remove the field")
            return spec.default if spec.default is not None else None
        if t == "string":
            s = _scalar_str(node)
            if s is None or isinstance(v, bool):
                hint = f'quote it: "{s}"' if isinstance(v, bool) else ""
                return bad("a string", hint)
            return s
        if t in ("integer", "number"):
            if spec.template and _is_template(v):
                return v
            if (t == "number" and isinstance(v, str) and node.text is not None
                    and _DECIMAL.fullmatch(v)):
                v = float(v)  # `1.50`, `.5`, `1e3` written bare: unambiguous numbers
            ok = isinstance(v, int) if t == "integer" else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok:
                if isinstance(v, str) and node.text is not None and _NUMBER_LIKE.fullmatch(v):
                    return bad("a plain decimal number",
                               f"write it in decimal digits only (no leading 0, `_`, `:` "
                               f"or 0x): YAML 1.1 tools read `{v}` as another number")
                example = ("8000" if "port" in (name or path) else "3") if t == "integer" \
                    else "30 or 1.5 (seconds)"
                with_unit = (isinstance(v, str) and v[-1:] in ("s", "m", "h")
                             and v[:-1].replace(".", "", 1).isdigit())
                unit = " (seconds, no unit)" if with_unit else ""
                return bad("an integer" if t == "integer" else "a number",
                           f"write a plain number{unit}, e.g. {example}")
            bound = BOUNDS.get(name)
            if bound is not None:
                low, exclusive = bound
                if v < low or (exclusive and v == low):
                    rel = "greater than" if exclusive else "at least"
                    self.error(node, path, f"must be {rel} {low:g}, got {v}")
                    return INVALID
            return v
        if t == "boolean":
            if spec.template and _is_template(v):
                return v
            if isinstance(v, BoolWord):
                return bool(v)  # `sudo: yes` in a field that is a boolean
            if not isinstance(v, bool):
                return bad("true or false")
            return v
        if t == "boolean|string":
            if isinstance(v, (bool, BoolWord)):
                return bool(v)
            s = _scalar_str(node)
            if s is None:
                return bad("true, false or a text")
            return s
        if t == "choice":
            if not isinstance(v, str) or v not in spec.choices:
                self.error(node, path, f"expected one of {', '.join(spec.choices)}, "
                           f"got {_type_name(v)}", suggest(str(v), spec.choices))
                return INVALID
            return v
        if t in ("list[string]", "list[integer]", "string|list[string]"):
            if t == "string|list[string]" and not isinstance(v, (list, dict)):
                s = _scalar_str(node)
                return s if s is not None else bad("a string or a list of strings")
            items = node.value if node.is_list else None
            if items is None:
                if node.is_mapping or v is None:
                    return bad("a list")
                items = [node]  # a single value stands for a list of one
            out = []
            for i, item in enumerate(items):
                ipath = _join(path, i) if node.is_list else path
                if t == "list[integer]":
                    if spec.template and _is_template(item.value):
                        out.append(item.value)
                    elif isinstance(item.value, bool) or not isinstance(item.value, int):
                        self.error(item, ipath, f"expected an integer, got "
                                   f"{_type_name(item.value)}")
                        return INVALID
                    else:
                        out.append(item.value)
                else:
                    s = _scalar_str(item)
                    if s is None or isinstance(item.value, bool):
                        self.error(item, ipath, f"expected a string, got "
                                   f"{_type_name(item.value)}")
                        return INVALID
                    out.append(s)
            return out
        if t == "mapping":
            if not node.is_mapping:
                return bad("a mapping of names to strings")
            out_map: dict[str, str] = {}
            for key, child in node.items():
                s = _scalar_str(child)
                if s is None:
                    self.error(child, _join(path, str(key)), "expected a string, got "
                               f"{_type_name(child.value)}")
                    return INVALID
                out_map[str(key)] = s
            return out_map
        if t == "vars":
            if not node.is_mapping:
                return bad("a mapping of variable names to values")
            for key in node.value:
                if not isinstance(key, str) or not NAME_RE.match(key):
                    self.error(node.value[key], _join(path, str(key)),
                               f"invalid variable name `{key}`",
                               "use letters, digits and _ (not starting with a digit): "
                               "Jinja must be able to refer to it", pos=node.key_pos(key))
            return node.plain()
        if t.startswith("object:"):
            checked = self.mapping(node, SPECS[t[7:]], path)
            return checked if node.is_mapping else INVALID
        if t.startswith("map:"):
            if not node.is_mapping:
                return bad("a mapping of names")
            sub = SPECS[t[4:]]
            result: dict[str, Any] = {}
            for key, child in node.items():
                kpath = _join(path, str(key))
                if child.value is None:
                    result[str(key)] = {}
                    continue
                result[str(key)] = self.mapping(child, sub, kpath)
            return result
        if t in ("steps", "rollback"):
            return node  # structural: handled by validate_step / runbook.py
        raise ValueError(f"unknown field type {t!r}")  # pragma: no cover - spec bug


def clean(values: dict[str, Any]) -> dict[str, Any]:
    """Drop INVALID entries from a checked mapping."""
    return {k: v for k, v in values.items() if v is not INVALID}


def split_kind(node: Node, path: str, checker: Checker, allowed: dict[str, FieldSpec],
               what: str = "step") -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """Find the single kind key of a step (or rollback body) mapping and check its options.

    Returns (kind, kind options, checked common fields).
    """
    from deployer.steps import kind_names

    kinds = kind_names()
    if not node.is_mapping:
        checker.error(node, path, f"expected a {what} (a mapping with one of: "
                      f"{', '.join(kinds)}), got {_type_name(node.value)}")
        return None, {}, {}
    present = [k for k in node.value if k in kinds]
    common = checker.mapping(node, allowed, path, extra_keys=tuple(kinds))
    common = {k: v for k, v in common.items() if k not in kinds}
    if not present:
        unknown = [k for k in node.value if k not in allowed]
        hint = ("the kind key is one of: " + ", ".join(kinds))
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), kinds, n=1, cutoff=0.5)
            if close:
                hint = f"did you mean `{close[0]}`? ({hint})"
        checker.error(node, path, f"{what} has no kind: expected exactly one of "
                      f"{', '.join(kinds)}", hint)
        return None, {}, clean(common)
    if len(present) > 1:
        checker.error(node, path, f"{what} has several kinds ({', '.join(present)}); a "
                      "step does exactly one thing", "split it into several steps",
                      pos=node.key_pos(present[1]))
        return None, {}, clean(common)
    kind = present[0]
    if kind == "include" and what != "step":
        checker.error(node.value[kind], _join(path, kind), "include cannot be used here",
                      "use a run/local/psql/... body", pos=node.key_pos(kind))
        return None, {}, clean(common)
    options = kind_options(node.value[kind], kind, _join(path, kind), checker)
    return kind, options if options is not None else {}, clean(common)


def kind_options(node: Node, kind: str, path: str, checker: Checker) -> dict[str, Any] | None:
    """Check the options of one kind (with the string shorthand expanded)."""
    fields = kind_specs()[kind]
    if node.is_scalar and node.value is not None and not isinstance(node.value, bool):
        short = kind_shorthand(kind)
        if short is None:
            checker.error(node, path, f"`{kind}` needs a mapping of options",
                          "options: " + ", ".join(fields))
            return None
        fake = Node({short: node}, node.pos, {short: node.pos})
        return clean(checker.mapping(fake, fields, path))
    if node.value is None:
        node = Node({}, node.pos)
    before = len(checker.problems)
    opts = checker.mapping(node, fields, path, what=f" of `{kind}` options")
    if len(checker.problems) > before:
        return None
    return clean(opts)


def validate_step(node: Node, path: str, checker: Checker) -> dict[str, Any] | None:
    """Check one step; returns {common fields..., kind, options, rollback} or None."""
    kind, options, common = split_kind(node, path, checker, STEP_FIELDS)
    if kind is None:
        return None
    if kind == "include":
        extra = [k for k in node.value if k in STEP_FIELDS and k not in INCLUDE_STEP_FIELDS]
        for key in extra:
            checker.error(node.value[key], _join(path, key),
                          f"`{key}` cannot be set on an include step",
                          "set it on the included steps; an include only takes "
                          + ", ".join(INCLUDE_STEP_FIELDS), pos=node.key_pos(key))
    ident = common.get("id")
    if isinstance(ident, str) and not ID_RE.match(ident):
        checker.error(node.value["id"], _join(path, "id"), f"invalid id `{ident}`",
                      "use lower-case letters, digits and _ . - (starting with a letter or "
                      "digit)")
    capture = common.get("capture")
    if isinstance(capture, str) and not NAME_RE.match(capture):
        checker.error(node.value["capture"], _join(path, "capture"),
                      f"invalid variable name `{capture}`",
                      "use letters, digits and _ so later steps can use {{ " + "name }}")
    rollback = None
    rb_node = node.value.get("rollback")
    if isinstance(rb_node, Node):
        rollback = validate_rollback(rb_node, _join(path, "rollback"), checker)
        common.pop("rollback", None)
    result = dict(common)
    result.update(kind=kind, options=options, rollback=rollback)
    return result


def validate_rollback(node: Node, path: str, checker: Checker) -> Any:
    """``irreversible`` or a body dict {kind, options, cwd, env, sudo, timeout}."""
    if node.value == IRREVERSIBLE:
        return IRREVERSIBLE
    if isinstance(node.value, str):
        checker.error(node, path, f"expected `irreversible` or a step body, got "
                      f"{_type_name(node.value)}",
                      'write `rollback: {run: "..."}` for a command, or `irreversible`')
        return INVALID
    kind, options, common = split_kind(node, path, checker, ROLLBACK_FIELDS, what="rollback")
    if kind is None:
        return INVALID
    return dict(common, kind=kind, options=options)


def validate_runbook(node: Node) -> list[Problem]:
    """All problems of a runbook document (steps included, includes not followed)."""
    checker = Checker()
    top = checker.mapping(node, RUNBOOK_FIELDS, "", what=" (the runbook)")
    steps = top.get("steps")
    if isinstance(steps, Node):
        check_steps(steps, checker)
    return checker.problems


def check_steps(node: Node, checker: Checker) -> list[tuple[Node, dict[str, Any] | None]]:
    """Check the ``steps`` list; returns each step node with its checked fields."""
    if not node.is_list:
        checker.error(node, "steps", f"expected a list of steps, got {_type_name(node.value)}")
        return []
    if not node.value:
        checker.error(node, "steps", "a runbook needs at least one step")
    return [(item, validate_step(item, f"steps[{i}]", checker))
            for i, item in enumerate(node.value)]


def check_secret_names(names: Any, node: Node | None, checker: Checker) -> None:
    if not isinstance(names, list):
        return
    for i, name in enumerate(names):
        if not NAME_RE.match(name):
            item = node.value[i] if node is not None and node.is_list else node
            checker.error(item, f"secrets[{i}]", f"invalid secret name `{name}`",
                          "use letters, digits and _ so it can be used as {{ secrets.NAME }}")


def validate_inventory(node: Node) -> list[Problem]:
    """All problems of a native inventory document."""
    checker = Checker()
    checker.mapping(node, INVENTORY_FIELDS, "", what=" (the inventory)")
    return checker.problems


# ---------------------------------------------------------------- JSON Schema

def _json_type(spec: FieldSpec) -> dict[str, Any]:
    t = spec.type
    tmpl = {"type": "string", "pattern": r"\{[{%]"}
    if t == "string":
        out: dict[str, Any] = {"type": ["string", "number"]}
    elif t == "integer":
        out = {"anyOf": [{"type": "integer"}, tmpl]} if spec.template else {"type": "integer"}
    elif t == "number":
        out = {"anyOf": [{"type": "number"}, tmpl]} if spec.template else {"type": "number"}
    elif t == "boolean":
        out = {"anyOf": [{"type": "boolean"}, tmpl]} if spec.template else {"type": "boolean"}
    elif t == "boolean|string":
        out = {"type": ["boolean", "string"]}
    elif t == "choice":
        out = {"enum": list(spec.choices)}
    elif t == "list[string]":
        out = {"anyOf": [{"type": "array", "items": {"type": ["string", "number"]}},
                         {"type": "string"}]}
    elif t == "list[integer]":
        out = {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "integer"}]}
    elif t == "string|list[string]":
        out = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    elif t == "mapping":
        out = {"type": "object", "additionalProperties": {"type": ["string", "number",
                                                                   "boolean"]}}
    elif t == "vars":
        out = {"type": "object", "propertyNames": {"pattern": NAME_RE.pattern}}
    elif t == "steps":
        out = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}}
    elif t == "rollback":
        out = {"anyOf": [{"const": IRREVERSIBLE}, {"$ref": "#/$defs/rollback_body"}]}
    elif t.startswith("object:"):
        out = {"$ref": f"#/$defs/{t[7:]}"}
    elif t.startswith("map:"):
        out = {"type": "object", "additionalProperties": {"$ref": f"#/$defs/{t[4:]}"}}
    else:  # "any"
        out = {}
    out["description"] = spec.doc
    if spec.default not in (None, {}, []):
        out["default"] = spec.default
    return out


def _object(fields: dict[str, FieldSpec]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: _json_type(spec) for name, spec in fields.items()},
        "required": [name for name, spec in fields.items() if spec.required],
        "additionalProperties": False,
    }


def _with_kinds(fields: dict[str, FieldSpec], kinds: list[str]) -> dict[str, Any]:
    obj = _object(fields)
    for kind in kinds:
        obj["properties"][kind] = {"$ref": f"#/$defs/kind_{kind}"}
    obj["oneOf"] = [{"required": [kind]} for kind in kinds]
    return obj


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a runbook, for editors (`deployer schema`)."""
    from deployer.steps import registry

    kinds = kind_specs()
    defs: dict[str, Any] = {}
    for name, fields in kinds.items():
        obj = _object(fields)
        short = kind_shorthand(name)
        doc = registry()[name].doc if name in registry() else "Include another runbook's steps."
        defs[f"kind_{name}"] = ({"description": doc, "anyOf": [{"type": "string"}, obj]}
                                if short else dict(obj, description=doc))
    defs["step"] = _with_kinds(STEP_FIELDS, list(kinds))
    defs["rollback_body"] = _with_kinds(ROLLBACK_FIELDS, [k for k in kinds if k != "include"])
    schema = _object(RUNBOOK_FIELDS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://deployer.invalid/runbook.schema.json",
        "title": "deployer runbook",
        **schema,
        "$defs": defs,
    }


def inventory_json_schema() -> dict[str, Any]:
    """JSON Schema of the native inventory format."""
    defs = {name: _object(SPECS[name]) for name in ("host", "defaults", "group", "secret")}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://deployer.invalid/inventory.schema.json",
        "title": "deployer inventory",
        **_object(INVENTORY_FIELDS),
        "$defs": defs,
    }
