"""The one Jinja environment of a project (sandboxed, strict, with deployer's filters),
cached per project directory, and the templates it can load.

Templates (and what they include) load from the project's ``templates/`` first, then
from the packaged templates (``deployer.shipped``).
"""

from __future__ import annotations

import os

import jinja2

from deployer import shipped
from deployer.jinjasandbox import SandboxedEnvironment
from deployer.templating.filters import FILTERS

# One per project: building an environment (loader, filters) for every context would
# cost more than most renders, and Jinja caches loaded templates per environment.
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
        for name, func in FILTERS.items():
            env.add_filter(name, func)
        _ENVS[key] = env
    return env


def list_templates(project_dir: str) -> list[str]:
    """Template names (paths relative to a templates folder): the project's
    ``templates/`` and the packaged templates, sorted."""
    found: set[str] = set()
    for root in shipped.roots(project_dir, shipped.TEMPLATES):
        found.update(shipped.names_in(root, shipped.TEMPLATES))
    return sorted(found)
