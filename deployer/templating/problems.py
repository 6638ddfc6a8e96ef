"""How a failed render is reported: one ``InputError`` naming the runbook file, the
step, the field, the line in the value or template, and a fix (the close name for a
typo, where to declare a missing variable or secret, the keys a mapping has)."""

from __future__ import annotations

import difflib
import re
from typing import Any

import jinja2

from deployer.errors import InputError, Position, Problem
from deployer.templating.base import ContextBase
from deployer.templating.lazyvars import VarCycle
from deployer.yamlsrc import display_path, field_position

# Jinja globals the sandbox leaves out (deployer.jinjasandbox), with what to write instead.
_REMOVED_GLOBALS = {"lipsum": "a plan must be reproducible: write the text in the runbook"}
_UNDEF_RE = re.compile(r"'([^']+)' is undefined")
_ATTR_RE = re.compile(r"has no attribute '([^']+)'")
_HOST_KEYS = ("name", "address", "user", "port", "groups")


def owner_of(name: str, source: str) -> str | None:
    """The dotted expression a missing key ``name`` was looked up on in ``source``
    (``db`` for ``{{ db.nmae }}`` or ``db['nmae']``), when exactly one is found."""
    pattern = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*(?:\.\s*" + re.escape(name)
                         + r"\b|\[\s*['\"]" + re.escape(name) + r"['\"]\s*\])")
    owners = {m.group(1) for m in pattern.finditer(source)}
    return owners.pop() if len(owners) == 1 else None


def jinja_line(exc: BaseException, template: jinja2.Template, before: str = " (",
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


def _did_you_mean(close: list[str], prefix: str = "") -> str:
    return f"did you mean `{prefix}{close[0]}`? " if close else ""


class Problems(ContextBase):
    """Error reporting of a render context."""

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

    def _cycle(self, exc: VarCycle, where: str) -> InputError:
        return self._problem(f"variables refer to each other in a cycle: {exc}", where,
                             "break the cycle")

    def _undefined(self, exc: jinja2.UndefinedError, where: str,
                   source: str = "") -> InputError:
        """The problem for Jinja's undefined error ``exc`` (``source``: the template text,
        which tells whose key was missing)."""
        text = str(exc.message or exc)
        match = _UNDEF_RE.search(text)
        if match:
            return self._undefined_name(match.group(1), where)
        match = _ATTR_RE.search(text)
        if match and "dict object" in text:
            return self._undefined_key(match.group(1), where, source)
        return self._problem(f"undefined value: {text}", where,
                             "check the names and attributes the expression uses")

    def _undefined_name(self, name: str, where: str) -> InputError:
        if name in _REMOVED_GLOBALS:
            return self._problem(f"`{name}` is not available in deployer templates",
                                 where, _REMOVED_GLOBALS[name])
        known = [k for k in self._names if not k.startswith("_")]
        hint = _did_you_mean(difflib.get_close_matches(name, known, n=1)) + (
            f"define it in the runbook's vars, the inventory, --vars-file or "
            f"--var {name}=...")
        return self._problem(f"undefined variable `{name}`", where, hint)

    def _undefined_key(self, name: str, where: str, source: str) -> InputError:
        owner = owner_of(name, source)
        if owner == "secrets" or (owner is None and name not in self.secrets
                                  and self._mentions_secret(name)):
            hint = _did_you_mean(difflib.get_close_matches(name, list(self.secrets), n=1)
                                 ) + f"declare it in the runbook: secrets: [{name}]"
            return self._problem(f"undefined secret `secrets.{name}`", where, hint)
        if owner is None:
            return self._problem(f"undefined attribute `{name}`", where,
                                 "check the name of the key or attribute")
        keys = self._keys_of(owner)
        hint = _did_you_mean(difflib.get_close_matches(name, keys, n=1), f"{owner}.") + (
            f"`{owner}` has: {', '.join(keys)}" if keys else f"`{owner}` is empty")
        return self._problem(f"undefined key `{owner}.{name}`", where, hint)

    def _keys_of(self, dotted: str) -> list[str]:
        """The keys of the mapping named by ``dotted`` (``db``, ``host``, ``a.b``)."""
        head, *rest = dotted.split(".")
        if head == "host":
            value: Any = {k: None for k in _HOST_KEYS}
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
        return self.runbook.secrets is not None and name not in (*_HOST_KEYS, "description")
