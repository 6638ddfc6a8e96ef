"""Rendering a runbook value: plain look-ups directly, everything else through Jinja in
the sandbox with its limits, every failure one ``InputError`` (``problems.py``).

Values without Jinja come back exactly as written; a string of text around plain
``{{ name }}`` / ``{{ name.attr }}`` renders by direct look-up (``compiled.simple_parts``),
which gives what Jinja gives, without compiling a template.
"""

from __future__ import annotations

from typing import Any

import jinja2

from deployer.errors import InputError
from deployer.jinjasandbox import UNSAFE_HINT, RenderLimitError, SecurityError, budget, collect
from deployer.templating.compiled import Parts, compiled, simple_parts
from deployer.templating.filters import TemplateValueError
from deployer.templating.lazyvars import LazyVars, VarCycle
from deployer.templating.problems import Problems, jinja_line
from deployer.templating.values import contains_template

_MISSING = object()


class Rendering(Problems):
    """``render`` and the two paths under it (direct look-up, Jinja)."""

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

    def _render_var(self, value: Any, where: str) -> Any:
        if not contains_template(value):
            return value
        return self.render(value, where)

    def _render_str(self, text: str, where: str) -> str:
        if "{{" not in text and "{%" not in text and "{#" not in text:
            return text
        parts = simple_parts(text)
        if parts is not None:
            try:
                rendered = self._render_simple(parts)
            except VarCycle as exc:
                raise self._cycle(exc, where) from None
            if rendered is not None:
                return rendered
        return self._render_jinja(text, where)

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

    def _render_simple(self, parts: Parts) -> str | None:
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

    def _render_jinja(self, text: str, where: str) -> str:
        with budget():
            try:
                template = compiled(self.env, text)
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
            raise self._undefined(exc, where, _source(template, source)) from None
        except SecurityError as exc:
            raise self._problem(f"unsafe template{jinja_line(exc, template)}: {exc}",
                                where, UNSAFE_HINT) from None
        except RenderLimitError as exc:
            raise self._problem(f"{exc}{jinja_line(exc, template, ' (', ')')}", where,
                                exc.hint) from None
        except VarCycle as exc:
            raise self._cycle(exc, where) from None
        except TemplateValueError as exc:
            raise self._problem(str(exc), where, exc.hint) from None
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a filter or expression failed
            raise self._problem(f"cannot render{jinja_line(exc, template)}: "
                                f"{type(exc).__name__}: {exc}", where) from None


def _source(template: jinja2.Template, source: str | None) -> str:
    """The text of a runbook value, or of the template file (read only on error)."""
    if source is not None:
        return source
    if not template.filename:
        return ""
    with open(template.filename, encoding="utf-8", errors="replace") as fh:
        return fh.read()
