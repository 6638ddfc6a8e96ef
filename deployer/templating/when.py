"""A step's ``when``: its bare expression, the names it reads (a plan decides at run
time when they are captures not made yet), and its truth for this host."""

from __future__ import annotations

from typing import Any

import jinja2
import jinja2.meta

from deployer.templating.rendering import Rendering

# Text that means false, as YAML and shells write it; Jinja alone would call any
# non-empty text true.
_FALSY = {"", "false", "no", "off", "0", "none", "null"}


def when_expression(expr: Any) -> str:
    """The bare expression of a ``when`` (braces optional)."""
    text = str(expr).strip()
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        return text[2:-2].strip()
    return text


class When(Rendering):
    """``when_expression``, ``when_names``, ``pending_in`` and ``eval_when``."""

    when_expression = staticmethod(when_expression)

    def when_names(self, expr: Any) -> set[str]:
        """Names a ``when`` expression refers to (for plan-time decisions)."""
        if isinstance(expr, bool):
            return set()
        try:
            ast = self.env.parse("{{ " + when_expression(expr) + " }}")
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
        inner = when_expression(text)
        if "{{" in inner or "{%" in inner:
            rendered = self._render_str(text, "when")
            return rendered.strip().lower() not in _FALSY
        return self._eval_condition(inner)

    def _eval_condition(self, inner: str) -> bool:
        source = "{% if " + inner + " %}1{% else %}0{% endif %}"
        try:
            self.env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise self._problem(f"invalid `when` expression `{inner}`: {exc.message}",
                                "when") from None
        if self._render_str(source, "when") != "1":
            return False
        # A bare variable holding the text "false" is false (e.g. from --var x=false
        # quoted, or a rendered template); Jinja would call any non-empty text true.
        value = self._names.get(inner) if inner.isidentifier() else None
        return not (isinstance(value, str) and value.strip().lower() in _FALSY)
