"""Files a step reads on the operator's machine: templates from ``templates/`` (rendered
in the sandbox with the step's names) and local files relative to the project."""

from __future__ import annotations

import difflib
import os
from typing import Any

import jinja2

from deployer import shipped
from deployer.errors import InputError
from deployer.jinjasandbox import RenderLimitError, budget
from deployer.templating.jinjaenv import list_templates
from deployer.templating.lazyvars import LazyVars
from deployer.templating.rendering import Rendering
from deployer.templating.secret_use import template_reads_secrets
from deployer.yamlsrc import display_path


class Files(Rendering):
    """``template``, ``template_uses_secrets``, ``local_path`` and ``read_local``."""

    def template(self, path: str, extra: dict[str, Any] | None = None) -> str:
        """Render ``templates/<path>`` with the step's variables (plus ``extra``)."""
        template = self._load_template(path)
        if template.filename:
            rel = os.path.relpath(template.filename, self.project_dir)
            if rel not in self.runbook.template_files:
                self.runbook.template_files.append(rel)
        with budget():
            return self._run(template, self._names_with(extra), f"template {path}", None)

    def template_uses_secrets(self, path: str, extra: dict[str, Any] | None = None) -> bool:
        """Whether ``templates/<path>`` can read a secret: it names ``secrets``, or a
        variable (or ``extra`` value, or included template) that does, at any depth
        (``secret_use.py`` says why this is static and conservative)."""
        return template_reads_secrets(self.env, {**self._raw, **(extra or {})}, path)

    def _load_template(self, path: str) -> jinja2.Template:
        try:
            with budget():
                return self.env.get_template(path)
        except jinja2.TemplateNotFound as exc:
            raise self._not_found(exc.name or path) from None
        except jinja2.TemplateSyntaxError as exc:
            raise self._problem(f"template syntax error in {exc.name or path} line "
                                f"{exc.lineno}: {exc.message}", "") from None
        except RenderLimitError as exc:
            raise self._problem(f"template {path}: {exc}", "", exc.hint) from None
        except (OSError, UnicodeDecodeError, RecursionError) as exc:
            raise self._problem(f"template {path}: cannot load: {type(exc).__name__}: "
                                f"{exc}", "", "check the template file") from None

    def _not_found(self, missing: Any) -> InputError:
        tdir = display_path(os.path.join(self.project_dir, "templates"))
        hint = f"create {tdir}/{missing}"
        close = difflib.get_close_matches(str(missing), list_templates(self.project_dir), n=1)
        if close:
            hint = f"did you mean `{close[0]}`? ({hint})"
        where_not = f"{tdir}/"
        if len(shipped.roots(self.project_dir, shipped.TEMPLATES)) > 1:
            where_not += " or the packaged templates"
        return self._problem(f"template `{missing}` not found in {where_not}", "", hint)

    def _names_with(self, extra: dict[str, Any] | None) -> LazyVars:
        """The step's names, plus ``extra`` (never rendered) in a copy when given."""
        if not extra:
            return self._names
        names = LazyVars({k: dict.__getitem__(self._names, k) for k in self._names.keys()},
                         self._render_var)
        names._done = set(self._names._done)
        names.looked_up = self._names.looked_up
        for key, value in extra.items():
            names.set_done(key, value)
        return names

    def local_path(self, path: str) -> str:
        """A path on the operator's machine, relative to the project directory."""
        path = os.path.expanduser(path)
        return path if os.path.isabs(path) else os.path.normpath(
            os.path.join(self.project_dir, path))

    def read_local(self, path: str) -> bytes:
        """The bytes of a local file (``local_path``); a missing file is an ``InputError``."""
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
