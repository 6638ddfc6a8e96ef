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

This package's rooms, one concern each:

- ``jinjaenv``: the project's sandboxed environment and the templates it finds;
- ``filters``: ``quote``, ``to_json``, ``env_value``, ``env_quote``;
- ``compiled``: template strings compiled once, and the direct look-up fast path;
- ``lazyvars``: variables rendered on first use, cycle detection;
- ``values``: the strings inside nested values;
- ``placeholders``: captured values before they are captured;
- ``context``: ``StepContext`` put together from ``base`` (its state), ``problems``
  (error reports), ``rendering``, ``files`` (templates, local files; ``secret_use``
  says whether a template reads a secret), ``when`` and ``hostfacts``;
- ``variables``: ``--var``, ``--vars-file`` and their merge.
"""

from deployer.templating.compiled import simple_parts as _simple_parts
from deployer.templating.context import RESERVED, StepContext, make_context
from deployer.templating.filters import TemplateValueError
from deployer.templating.jinjaenv import environment, list_templates
from deployer.templating.lazyvars import LazyVars
from deployer.templating.placeholders import captured_placeholder
from deployer.templating.values import strings_in
from deployer.templating.variables import MergedVars, load_vars_file, merge_vars, parse_cli_var

__all__ = [
    "RESERVED", "LazyVars", "MergedVars", "StepContext", "TemplateValueError",
    "captured_placeholder", "environment", "list_templates", "load_vars_file",
    "make_context", "merge_vars", "parse_cli_var", "strings_in", "_simple_parts",
]
