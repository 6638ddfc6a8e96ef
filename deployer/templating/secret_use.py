"""Whether a template file can read a secret: it names ``secrets``, or a variable (or
included template) that does, at any depth.

Static and conservative on purpose (a branch not taken counts): the answer decides
whether a plan may show a digest of the rendered file, and a digest of a value derived
from a secret (``| b64encode``, a hash) betrays it as surely as one of the secret itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.meta

from deployer.templating.values import contains_template, template_strings


class _Scan:
    """A walk over templates and variable values, each visited once."""

    def __init__(self, env: jinja2.Environment, raw: Mapping[str, Any]) -> None:
        self.env = env
        self.raw = raw
        self.seen_templates: set[str] = set()
        self.seen_names: set[str] = set()
        self.queue: list[tuple[str, Any]] = []

    def add_template(self, name: str) -> None:
        if name and name not in self.seen_templates:
            self.seen_templates.add(name)
            self.queue.append(("template", name))

    def names_in(self, source: str) -> set[str]:
        """The free names of ``source``; the templates it includes join the queue."""
        try:
            ast = self.env.parse(source)
            # Compiles the source: an unknown filter fails here, not in parse().
            names = set(jinja2.meta.find_undeclared_variables(ast))
        except jinja2.TemplateSyntaxError:  # and TemplateAssertionError: it never renders
            return set()
        for ref in jinja2.meta.find_referenced_templates(ast):
            if ref:
                self.add_template(ref)
        return names

    def names_of(self, what: str, item: Any) -> set[str] | None:
        """The names one queued template or value refers to (None: no such template)."""
        if what == "template":
            loader = self.env.loader
            assert loader is not None  # environment() always gives one
            try:
                source = loader.get_source(self.env, item)[0]
            except jinja2.TemplateNotFound:
                return None
            return self.names_in(source)
        names: set[str] = set()
        for text in template_strings(item):
            names |= self.names_in(text)
        return names

    def reads_secrets(self, path: str) -> bool:
        self.add_template(path)
        while self.queue:
            names = self.names_of(*self.queue.pop())
            if names is None:
                continue
            if "secrets" in names:
                return True
            for name in names - self.seen_names:
                self.seen_names.add(name)
                if name in self.raw and contains_template(self.raw[name]):
                    self.queue.append(("value", self.raw[name]))
        return False


def template_reads_secrets(env: jinja2.Environment, raw: Mapping[str, Any],
                           path: str) -> bool:
    """Whether ``templates/<path>`` (in ``env``, with the variables ``raw`` as written)
    can read a secret."""
    return _Scan(env, raw).reads_secrets(path)
