"""Jinja2 rendering of runbook values for one host and one step (``RenderContext``).

Rendering is strict: an undefined name is an ``InputError`` naming the runbook file,
the step, the field and the variable (with a "did you mean" when a known name is
close). Variables may themselves hold Jinja (``db_url: "postgresql://{{ db_user }}@db"``);
they are rendered lazily, on first use, so an unused variable never causes an error
and a cycle between variables is reported instead of recursing forever.

Names visible in templates: every merged variable, captured values (at plan time a
capture not yet made renders as ``<captured: NAME>``), ``secrets`` (name -> value),
``host`` (name, address, user, port, groups) and ``runbook`` (name). The ``quote``
filter shell-quotes a value.

Every template renders in ``deployer.jinjasandbox`` (Jinja's immutable sandbox with bounded
range, loops, output size and time): a runbook, template, inventory or vars file can
never run code on the machine that plans it. An unsafe access or a broken limit is an
``InputError`` with the file, field, line in the value or template, and a fix.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
import jinja2.meta

from deployer import shipped
from deployer.errors import InputError, Position, Problem, UsageError
from deployer.jinjasandbox import (
    UNSAFE_HINT,
    RenderLimitError,
    SandboxedEnvironment,
    SecurityError,
    budget,
    collect,
)
from deployer.models import Host, Runbook, Step
from deployer.steps.base import RenderContext
from deployer.yamlsrc import display_path, field_position, load_yaml, parse_yaml

RESERVED = ("secrets", "host", "runbook")
_FALSY = {"", "false", "no", "off", "0", "none", "null"}
# Jinja globals the sandbox leaves out (deployer.jinjasandbox), with what to write instead.
_REMOVED_GLOBALS = {"lipsum": "a plan must be reproducible: write the text in the runbook"}
_UNDEF_RE = re.compile(r"'([^']+)' is undefined")
_ATTR_RE = re.compile(r"has no attribute '([^']+)'")


def _owner_of(name: str, source: str) -> str | None:
    """The dotted expression a missing key ``name`` was looked up on in ``source``
    (``db`` for ``{{ db.nmae }}`` or ``db['nmae']``), when exactly one is found."""
    pattern = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*(?:\.\s*" + re.escape(name)
                         + r"\b|\[\s*['\"]" + re.escape(name) + r"['\"]\s*\])")
    owners = {m.group(1) for m in pattern.finditer(source)}
    return owners.pop() if len(owners) == 1 else None


def captured_placeholder(name: str) -> str:
    """What a value captured at run time looks like in a plan."""
    return f"<captured: {name}>"


def _quote(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        str(value)  # raises the usual undefined error
    return shlex.quote("" if value is None else str(value))


def _to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class TemplateValueError(Exception):
    """A filter refused a value; the message never holds the value itself."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# Characters an unquoted `.env` value cannot carry the same way through Compose v1 and
# v2: v2 strips quotes and expands `$`, v1 keeps quotes; `#` starts a comment in v2,
# whitespace and backslashes are trimmed or escaped differently.
_ENV_UNSAFE = {"'": "a quote", '"': "a quote", "`": "a backtick", "$": "`$`", "#": "`#`",
               "\\": "a backslash", " ": "a space", "\t": "a tab", "\n": "a newline",
               "\r": "a newline"}
_PLACEHOLDER = re.compile(r"<(?:captured: [A-Za-z_]\w*|secret:[A-Za-z_]\w*)>")


def _env_value(value: Any, name: str = "value") -> str:
    """``value`` checked for a Compose `.env` line: refused (naming ``name``, never the
    value) when Compose v1 and v2 would read it differently."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    text = "" if value is None else str(value)
    found = sorted({what for ch, what in _ENV_UNSAFE.items()
                    if ch in _PLACEHOLDER.sub("", text)})
    if found:
        raise TemplateValueError(
            f"{name} contains {' and '.join(found)}: Compose v1 and v2 read such a .env "
            "value differently (v2 strips quotes and expands `$`)",
            hint=f"choose a {name} without quotes, `$`, `#`, backslashes or whitespace")
    return text


def _env_quote(value: Any, name: str = "value", compose: Any = None) -> str:
    """``value`` for an env-file line of the Compose flavour ``compose`` (the
    ``env_quote`` filter; rules in ``deployer.envfile``)."""
    from deployer.envfile import EnvValueError, env_quote

    if isinstance(value, jinja2.Undefined):
        str(value)
    try:
        return env_quote(value, name, None if isinstance(compose, jinja2.Undefined)
                         else compose)
    except EnvValueError as exc:
        raise TemplateValueError(str(exc), exc.hint) from None


_ENVS: dict[str, SandboxedEnvironment] = {}


def environment(project_dir: str = ".") -> SandboxedEnvironment:
    """The Jinja environment for a project, the one every template of the project
    renders in (see ``deployer.jinjasandbox``): templates (and what they include) load
    from the project's ``templates/`` first, then from the packaged templates."""
    key = os.path.abspath(project_dir)
    env = _ENVS.get(key)
    if env is None:
        env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(shipped.roots(key, shipped.TEMPLATES)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        env.add_filter("quote", _quote)
        env.add_filter("to_json", _to_json)
        env.add_filter("env_value", _env_value)
        env.add_filter("env_quote", _env_quote)
        _ENVS[key] = env
    return env


_COMPILED: dict[tuple[int, str], jinja2.Template] = {}
_COMPILED_MAX = 4096


def _compiled(env: jinja2.Environment, text: str) -> jinja2.Template:
    """``env.from_string(text)``, compiled once: a plan renders the same strings for
    every host and validate renders every runbook, and compiling dominates rendering."""
    key = (id(env), text)
    template = _COMPILED.get(key)
    if template is None:
        template = env.from_string(text)
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = template
    return template


# `{{ name }}` and `{{ name.attr }}`: most runbook values are text around these, and a
# direct lookup skips compiling a template per distinct string (~0.3 ms each).
_SIMPLE_EXPR = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)"
                          r"(?:\.([A-Za-z_][A-Za-z0-9_]*))?[ \t]*\}\}")
# Names the Jinja parser reads as constants or operators, not as variables.
_NOT_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or",
                        "not", "in", "is", "if", "else"})
_MISSING = object()
_Parts = tuple  # literal text (str) and (name, attr or None) lookups, in order
_SIMPLE: dict[str, _Parts | None] = {}


def _simple_parts(text: str) -> _Parts | None:
    """``text`` split into literal text and plain lookups, or None when only Jinja
    itself may render it (statements, comments, filters, whitespace control, ``\\r``
    which Jinja's lexer rewrites, stray braces next to a block)."""
    if text in _SIMPLE:
        return _SIMPLE[text]
    parts: list[Any] | None = []
    if ("{%" in text or "{#" in text or "\r" in text or "{{{" in text
            or "}}}" in text):
        parts = None
    else:
        pos = 0
        found = 0
        pieces: list[Any] = []
        parts = pieces  # until a match rules the fast path out (None)
        for match in _SIMPLE_EXPR.finditer(text):
            if match.group(1) in _NOT_NAMES:
                parts = None
                break
            if match.start() > pos:
                pieces.append(text[pos:match.start()])
            pieces.append((match.group(1), match.group(2)))
            pos = match.end()
            found += 1
        if parts is not None:
            if found != text.count("{{"):
                parts = None
            elif pos < len(text):
                parts.append(text[pos:])
    result = tuple(parts) if parts is not None else None
    if len(_SIMPLE) >= _COMPILED_MAX:
        _SIMPLE.clear()
    _SIMPLE[text] = result
    return result


def _jinja_line(exc: BaseException, template: jinja2.Template, before: str = " (",
                after: str = ")") -> str:
    """Where in a template ``exc`` was raised: `` (line N of the value)`` for a runbook
    value, `` (templates/x.j2 line N)`` for a template file (the innermost one, when
    templates include others); empty when not found."""
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        tpl = tb.tb_frame.f_globals.get("__jinja_template__")
        if isinstance(tpl, jinja2.Template):
            line = tpl.get_corresponding_lineno(tb.tb_lineno)
            found = (f"templates/{tpl.name} line {line}" if tpl.name
                     else f"line {line} of the value")
        tb = tb.tb_next
    return f"{before}{found}{after}" if found else ""


class _Pending:
    """Marks a variable being rendered, to detect cycles."""


class LazyVars(dict):
    """Variables whose Jinja values are rendered on first access, then cached.

    Jinja looks names up in this mapping directly (``shared=True`` contexts), so a
    variable referencing another is resolved on demand.
    """

    # The names Jinja asked about (``in``), when the owner sets it (RenderContext does).
    looked_up: set[object]

    def __init__(self, raw: Mapping[str, Any], render: Any) -> None:
        super().__init__(raw)
        self._render = render
        self._done: set[str] = set()
        self._active: list[str] = []

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if key in self._done:
            return value
        if key in self._active:
            chain = " -> ".join(self._active[self._active.index(key):] + [key])
            raise _VarCycle(chain)
        self._active.append(key)
        try:
            value = self._render(value, f"vars.{key}")
        finally:
            self._active.pop()
        super().__setitem__(key, value)
        self._done.add(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if dict.__contains__(self, key) else default

    def __contains__(self, key: object) -> bool:
        looked_up = getattr(self, "looked_up", None)
        if looked_up is not None:
            looked_up.add(key)
        return dict.__contains__(self, key)

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def values(self):
        return [self[k] for k in self.keys()]

    def raw(self, key: str) -> Any:
        return super().__getitem__(key)


class _VarCycle(Exception):
    pass


class MergedVars(dict):
    """Merged variables; ``cli_keys`` are the names set with ``--var`` (they also win
    over an include's vars)."""

    cli_keys: frozenset[str] = frozenset()


def _contains_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_contains_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_template(v) for v in value)
    return False


def strings_in(value: Any) -> list[str]:
    """Every string inside nested lists and dicts (values only, not keys)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return []


def _template_strings(value: Any) -> list[str]:
    return [t for t in strings_in(value) if "{{" in t or "{%" in t]


class StepContext(RenderContext):
    """Renders values for one host and (optionally) one step."""

    def __init__(self, runbook: Runbook, host: Host, variables: Mapping[str, Any],
                 secrets: Mapping[str, str], captured: Mapping[str, Any],
                 step: Step | None = None, planning: bool = False,
                 project_dir: str = ".") -> None:
        self.runbook = runbook
        self.host = host
        self.step = step
        # "rollback." while the planner builds the step's rollback body, so errors name
        # `rollback.run.command` instead of the step's own `run.command`
        self.field_prefix = ""
        self.planning = planning
        self.project_dir = project_dir
        self.secrets = dict(secrets)
        self.env = environment(project_dir)
        self.pending_captures: set[str] = set()
        if planning:
            self.pending_captures = {c for c in _capture_names(runbook) if c not in captured}
        raw: dict[str, Any] = dict(variables)
        if step is not None and step.scope_vars:
            cli_keys: frozenset[str] = getattr(variables, "cli_keys", frozenset())
            for key, value in step.scope_vars.items():
                if key not in cli_keys:
                    raw[key] = value
        for name in self.pending_captures:
            raw[name] = captured_placeholder(name)
        raw.update(captured)
        self._raw = raw
        self.vars = LazyVars(raw, self._render_var)
        self._names = LazyVars(raw, self._render_var)
        for key, value in self.env.globals.items():
            if key not in raw:
                dict.__setitem__(self._names, key, value)
                self._names._done.add(key)
        reserved = {
            "secrets": self.secrets,
            "host": {"name": host.name, "address": host.address, "user": host.user,
                     "port": host.port, "groups": list(host.groups)},
            "runbook": {"name": runbook.name, "description": runbook.description},
        }
        for key, value in reserved.items():
            dict.__setitem__(self._names, key, value)
            self._names._done.add(key)
        # Names a template asked for (Jinja tests `name in context` before reading it),
        # kept so the planner can tell when a value it showed comes from a default.
        self._names.looked_up = set()
        # facts rendered with their stand-in (a plan: the host answers at run time)
        self._stood_in: set[str] = set()

    # -- host facts ----------------------------------------------------------------------

    def fact(self, name: str) -> str:
        """The host fact ``name`` (``deployer.facts``): pinned by the variable of that
        name (or found on the host and set there by the run), else the fact's stand-in,
        remembered for ``facts_pending``."""
        if self._raw.get(name):
            return str(self.vars[name])
        from deployer.facts import get_fact

        self._stood_in.add(name)
        return get_fact(name).stand_in

    def facts_pending(self) -> set[str]:
        """The facts something rendered so far used while unknown: through ``fact``
        (a kind), or a template naming the fact's variable. The plan shows their
        stand-ins for what the host decides at run time."""
        from deployer.facts import registry

        named = {n for n in registry() if n in self._names.looked_up and not self._raw.get(n)}
        return self._stood_in | named

    # -- errors -----------------------------------------------------------------------

    def _position(self, where: str = "") -> Position | None:
        if self.step is not None:
            if self.step.position is not None and (self.field_prefix or where):
                return (field_position(self.step.position, self.field_prefix + where)
                        or self.step.position)
            return self.step.position
        return self.runbook.description_position

    def _label(self, where: str) -> str:
        if self.step is not None:
            return f"step `{self.step.id}` {self.field_prefix}{where}".rstrip()
        return where or "value"

    def _problem(self, message: str, where: str, hint: str = "") -> InputError:
        pos = self._position(where)
        if pos is None:
            message = f"{display_path(self.runbook.path)}: {message}"
        return InputError(Problem(f"{self._label(where)}: {message}", pos, hint=hint))

    def _undefined(self, exc: jinja2.UndefinedError, where: str,
                   source: str = "") -> InputError:
        text = str(exc.message or exc)
        match = _UNDEF_RE.search(text)
        if match:
            name = match.group(1)
            known = [k for k in self._names if not k.startswith("_")]
            close = difflib.get_close_matches(name, known, n=1)
            if name in _REMOVED_GLOBALS:
                return self._problem(f"`{name}` is not available in deployer templates",
                                     where, _REMOVED_GLOBALS[name])
            hint = (f"did you mean `{close[0]}`? " if close else "") + (
                f"define it in the runbook's vars, the inventory, --vars-file or "
                f"--var {name}=...")
            return self._problem(f"undefined variable `{name}`", where, hint)
        match = _ATTR_RE.search(text)
        if match and "dict object" in text:
            name = match.group(1)
            owner = _owner_of(name, source)
            if owner == "secrets" or (owner is None and name not in self.secrets
                                      and self._mentions_secret(name)):
                close = difflib.get_close_matches(name, list(self.secrets), n=1)
                hint = (f"did you mean `{close[0]}`? " if close else "") + (
                    f"declare it in the runbook: secrets: [{name}]")
                return self._problem(f"undefined secret `secrets.{name}`", where, hint)
            if owner is None:
                return self._problem(f"undefined attribute `{name}`", where,
                                     "check the name of the key or attribute")
            keys = self._keys_of(owner)
            close = difflib.get_close_matches(name, keys, n=1)
            hint = (f"did you mean `{owner}.{close[0]}`? " if close else "") + (
                f"`{owner}` has: {', '.join(keys)}" if keys else f"`{owner}` is empty")
            return self._problem(f"undefined key `{owner}.{name}`", where, hint)
        return self._problem(f"undefined value: {text}", where,
                             "check the names and attributes the expression uses")

    def _keys_of(self, dotted: str) -> list[str]:
        """The keys of the mapping named by ``dotted`` (``db``, ``host``, ``a.b``)."""
        head, *rest = dotted.split(".")
        if head == "host":
            value: Any = {k: None for k in ("name", "address", "user", "port", "groups")}
        elif head == "runbook":
            value = {"name": None, "description": None}
        elif head == "secrets":
            value = self.secrets
        else:
            try:
                value = self._names[head]
            except (KeyError, jinja2.UndefinedError, InputError):
                return []
        for part in rest:
            value = value.get(part) if isinstance(value, dict) else None
        return sorted(str(k) for k in value) if isinstance(value, dict) else []

    def _mentions_secret(self, name: str) -> bool:
        # Without the source text the error only says "'dict object' has no attribute";
        # the secrets mapping is the usual culprit, unless the name is a host attribute.
        return self.runbook.secrets is not None and name not in (
            "name", "address", "user", "port", "groups", "description")

    # -- rendering --------------------------------------------------------------------

    def _cycle(self, exc: _VarCycle, where: str) -> InputError:
        return self._problem(f"variables refer to each other in a cycle: {exc}", where,
                             "break the cycle")

    def _lookup(self, name: str, attr: str | None) -> Any:
        """What Jinja resolves ``name`` or ``name.attr`` to, or ``_MISSING`` when that
        takes Jinja's own rules (undefined names, attributes of non-dicts)."""
        names = self._names
        if name not in names:  # `in` first, as Jinja does: it records the look-up
            return _MISSING
        value = names[name]
        if attr is None:
            return value
        # Jinja tries getattr before the item, so a key shadowed by a dict method
        # (`items`, `keys`...) is left to Jinja.
        if type(value) is not dict or attr not in value or hasattr(dict, attr):
            return _MISSING
        return value[attr]

    def _render_simple(self, parts: _Parts) -> str | None:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self._lookup(*part)
            if value is _MISSING:
                return None
            out.append(str(value))  # Jinja's `{{ }}` output without autoescape/finalize
        return "".join(out)

    def _render_str(self, text: str, where: str) -> str:
        if "{{" not in text and "{%" not in text and "{#" not in text:
            return text
        parts = _simple_parts(text)
        if parts is not None:
            try:
                rendered = self._render_simple(parts)
            except _VarCycle as exc:
                raise self._cycle(exc, where) from None
            if rendered is not None:
                return rendered
        return self._render_jinja(text, where)

    def _render_jinja(self, text: str, where: str) -> str:
        with budget():
            try:
                template = _compiled(self.env, text)
            except jinja2.TemplateSyntaxError as exc:
                raise self._problem(f"template syntax error: {exc.message} (line "
                                    f"{exc.lineno} of the value)", where,
                                    "check the {{ }} / {% %} delimiters") from None
            except RenderLimitError as exc:  # compiling a huge value runs out of time
                raise self._problem(str(exc), where, exc.hint) from None
            except Exception as exc:  # noqa: BLE001 - e.g. nesting too deep to compile
                raise self._problem(f"cannot compile: {type(exc).__name__}: {exc}", where,
                                    "simplify the expression") from None
            return self._run(template, self._names, where, text)

    def _run(self, template: jinja2.Template, names: LazyVars, where: str,
             source: str | None) -> str:
        """``template`` rendered with ``names`` inside the sandbox's limits; every
        failure an ``InputError`` at ``where`` (``source``: the text of a runbook
        value, for undefined-name hints; None for a template file, read on error)."""
        try:
            ctx = template.new_context(names, shared=True)
            return collect(template.root_render_func(ctx))
        except jinja2.UndefinedError as exc:
            if source is None:
                source = ""
                if template.filename:
                    with open(template.filename, encoding="utf-8", errors="replace") as fh:
                        source = fh.read()
            raise self._undefined(exc, where, source) from None
        except SecurityError as exc:
            raise self._problem(f"unsafe template{_jinja_line(exc, template)}: {exc}",
                                where, UNSAFE_HINT) from None
        except RenderLimitError as exc:
            raise self._problem(f"{exc}{_jinja_line(exc, template, ' (', ')')}", where,
                                exc.hint) from None
        except _VarCycle as exc:
            raise self._cycle(exc, where) from None
        except TemplateValueError as exc:
            raise self._problem(str(exc), where, exc.hint) from None
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a filter or expression failed
            raise self._problem(f"cannot render{_jinja_line(exc, template)}: "
                                f"{type(exc).__name__}: {exc}", where) from None

    def _render_var(self, value: Any, where: str) -> Any:
        if not _contains_template(value):
            return value
        return self.render(value, where)

    def render(self, value: Any, where: str = "") -> Any:
        """Render Jinja in a string, or recursively in a list or mapping."""
        if isinstance(value, str):
            return self._render_str(value, where)
        if isinstance(value, dict):
            return {k: self.render(v, f"{where}.{k}" if where else str(k))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.render(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def template(self, path: str, extra: dict[str, Any] | None = None) -> str:
        """Render ``templates/<path>`` with the step's variables (plus ``extra``)."""
        where = f"template {path}"
        try:
            with budget():
                template = self.env.get_template(path)
        except jinja2.TemplateNotFound as exc:
            missing = exc.name or path
            tdir = display_path(os.path.join(self.project_dir, "templates"))
            hint = f"create {tdir}/{missing}"
            known = list_templates(self.project_dir)
            close = difflib.get_close_matches(str(missing), known, n=1)
            if close:
                hint = f"did you mean `{close[0]}`? ({hint})"
            where_not = f"{tdir}/"
            if len(shipped.roots(self.project_dir, shipped.TEMPLATES)) > 1:
                where_not += " or the packaged templates"
            raise self._problem(f"template `{missing}` not found in {where_not}", "", hint
                                ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise self._problem(f"template syntax error in {exc.name or path} line "
                                f"{exc.lineno}: {exc.message}", "") from None
        except RenderLimitError as exc:
            raise self._problem(f"template {path}: {exc}", "", exc.hint) from None
        except (OSError, UnicodeDecodeError, RecursionError) as exc:
            raise self._problem(f"template {path}: cannot load: {type(exc).__name__}: "
                                f"{exc}", "", "check the template file") from None
        if template.filename:
            rel = os.path.relpath(template.filename, self.project_dir)
            if rel not in self.runbook.template_files:
                self.runbook.template_files.append(rel)
        names = self._names
        if extra:
            names = LazyVars({k: dict.__getitem__(self._names, k) for k in self._names.keys()},
                             self._render_var)
            names._done = set(self._names._done)
            names.looked_up = self._names.looked_up
            for key, value in extra.items():
                dict.__setitem__(names, key, value)
                names._done.add(key)
        with budget():
            return self._run(template, names, where, None)

    def template_uses_secrets(self, path: str, extra: dict[str, Any] | None = None) -> bool:
        """Whether ``templates/<path>`` can read a secret: it names ``secrets``, or a
        variable (or ``extra`` value, or included template) that does, at any depth.

        Static and conservative on purpose (a branch not taken counts): the answer
        decides whether a plan may show a digest of the rendered file, and a digest of
        a value derived from a secret (``| b64encode``, a hash) betrays it as surely as
        one of the secret itself."""
        raw = {**self._raw, **(extra or {})}
        seen_templates: set[str] = set()
        seen_names: set[str] = set()
        queue: list[Any] = []

        def parse_names(source: str) -> set[str]:
            try:
                ast = self.env.parse(source)
            except jinja2.TemplateSyntaxError:
                return set()
            for ref in jinja2.meta.find_referenced_templates(ast):
                if ref and ref not in seen_templates:
                    seen_templates.add(ref)
                    queue.append(("template", ref))
            return set(jinja2.meta.find_undeclared_variables(ast))

        loader = self.env.loader
        assert loader is not None  # environment() always gives one
        seen_templates.add(path)
        queue.append(("template", path))
        while queue:
            what, item = queue.pop()
            if what == "template":
                try:
                    source = loader.get_source(self.env, item)[0]
                except jinja2.TemplateNotFound:
                    continue
                names = parse_names(source)
            else:
                names = set()
                for text in _template_strings(item):
                    names |= parse_names(text)
            if "secrets" in names:
                return True
            for name in names - seen_names:
                seen_names.add(name)
                if name in raw and _contains_template(raw[name]):
                    queue.append(("value", raw[name]))
        return False

    def local_path(self, path: str) -> str:
        """A path on the operator's machine, relative to the project directory."""
        path = os.path.expanduser(path)
        return path if os.path.isabs(path) else os.path.normpath(
            os.path.join(self.project_dir, path))

    def read_local(self, path: str) -> bytes:
        full = self.local_path(path)
        try:
            with open(full, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise self._problem(f"local file `{display_path(full)}` not found", "",
                                "paths are relative to the project directory") from None
        except OSError as exc:
            raise self._problem(f"cannot read `{display_path(full)}`: {exc.strerror}", ""
                                ) from None

    # -- `when` -----------------------------------------------------------------------

    @staticmethod
    def when_expression(expr: Any) -> str:
        """The bare expression of a ``when`` (braces optional)."""
        text = str(expr).strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            return text[2:-2].strip()
        return text

    def when_names(self, expr: Any) -> set[str]:
        """Names a ``when`` expression refers to (for plan-time decisions)."""
        if isinstance(expr, bool):
            return set()
        try:
            ast = self.env.parse("{{ " + self.when_expression(expr) + " }}")
        except jinja2.TemplateSyntaxError:
            return set()
        return set(jinja2.meta.find_undeclared_variables(ast))

    def pending_in(self, expr: Any) -> list[str]:
        """Captures a ``when`` depends on that are not known yet (plan time)."""
        return sorted(self.when_names(expr) & self.pending_captures)

    def eval_when(self, expr: Any) -> bool:
        """Evaluate a ``when`` expression (``true``/``false``, or Jinja, braces optional)."""
        if isinstance(expr, bool):
            return expr
        text = str(expr).strip()
        if text.lower() in ("true", "yes", "on"):
            return True
        if text.lower() in ("false", "no", "off"):
            return False
        inner = self.when_expression(text)
        if "{{" in inner or "{%" in inner:
            rendered = self._render_str(text, "when")
            return rendered.strip().lower() not in _FALSY
        source = "{% if " + inner + " %}1{% else %}0{% endif %}"
        try:
            self.env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise self._problem(f"invalid `when` expression `{inner}`: {exc.message}",
                                "when") from None
        result = self._render_str(source, "when")
        if result == "1":
            # A bare variable holding the text "false" is false (e.g. from --var x=false
            # quoted, or a rendered template); Jinja would call any non-empty text true.
            value = self._names.get(inner) if inner.isidentifier() else None
            if isinstance(value, str) and value.strip().lower() in _FALSY:
                return False
            return True
        return False


_CAPTURES: dict[int, tuple[list[Step], tuple[str, ...]]] = {}


def _capture_names(runbook: Runbook) -> tuple[str, ...]:
    """The names the runbook's steps capture, computed once per runbook: a plan builds a
    context per step, and scanning every step each time would make planning N^2."""
    cached = _CAPTURES.get(id(runbook))
    if cached is not None and cached[0] is runbook.steps:
        return cached[1]
    names = tuple(dict.fromkeys(s.capture for s in runbook.steps if s.capture))
    if len(_CAPTURES) > 64:
        _CAPTURES.clear()
    _CAPTURES[id(runbook)] = (runbook.steps, names)
    return names


def make_context(runbook: Runbook, host: Host, variables: Mapping[str, Any], secrets: dict,
                 captured: dict, step: Step | None = None, planning: bool = False,
                 project_dir: str = ".") -> StepContext:
    """The ``RenderContext`` for rendering ``step`` (or runbook-level values) on ``host``."""
    return StepContext(runbook, host, variables, secrets, captured, step, planning,
                       project_dir)


def list_templates(project_dir: str) -> list[str]:
    """Template names (paths relative to a templates folder): the project's
    ``templates/`` and the packaged templates, sorted."""
    found: set[str] = set()
    for root in shipped.roots(project_dir, shipped.TEMPLATES):
        found.update(shipped.names_in(root, shipped.TEMPLATES))
    return sorted(found)


# ------------------------------------------------------------------------ variables

def parse_cli_var(item: str) -> tuple[str, Any]:
    """``k=v`` from ``--var``; the value is read as a bare YAML scalar of a runbook
    (``3`` -> 3, ``0644`` -> "0644")."""
    if "=" not in item:
        raise UsageError(f"--var `{item}` is not of the form NAME=VALUE",
                         hint="e.g. --var release=v1.2.3")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key.isidentifier():
        raise UsageError(f"--var `{item}`: `{key}` is not a valid variable name",
                         hint="use letters, digits and _ (not starting with a digit)")
    if text.strip() in ("null", "~", "Null", "NULL"):
        return key, None
    try:
        # read as a bare scalar in a runbook is (`0644` and `on` stay as typed)
        value = parse_yaml(text, "--var").value
    except InputError:
        return key, text
    # Only scalars are converted (`3` -> 3, `true` -> True); anything else (lists,
    # mappings, an empty value) stays the text as typed.
    if isinstance(value, (str, int, float, bool)):
        return key, value
    return key, text


def load_vars_file(path: str) -> dict[str, Any]:
    """A ``--vars-file``: a YAML mapping of variable names to values."""
    node = load_yaml(path)
    if node.value is None:
        return {}
    if not node.is_mapping:
        raise InputError(Problem("a vars file must be a mapping of names to values",
                                 node.pos, hint="e.g. release: v1.2.3"))
    problems = [Problem(f"invalid variable name `{k}`", node.key_pos(k),
                        hint="use letters, digits and _ (not starting with a digit)")
                for k in node.value if not isinstance(k, str) or not k.isidentifier()]
    if problems:
        raise InputError(problems)
    return node.plain()


def merge_vars(runbook: Runbook, host: Host, vars_files: Iterable[str],
               cli_vars: Iterable[str]) -> MergedVars:
    """Variables for ``host``, lowest precedence first: runbook vars < inventory
    (defaults < groups < host, already merged in ``host.vars``) < ``--vars-file`` (in
    order) < ``--var k=v``."""
    merged = MergedVars(runbook.vars)
    merged.update(host.vars)
    for path in vars_files:
        merged.update(load_vars_file(path))
    cli: dict[str, Any] = {}
    for item in cli_vars:
        key, value = parse_cli_var(item)
        cli[key] = value
    merged.update(cli)
    merged.cli_keys = frozenset(cli)
    return merged
