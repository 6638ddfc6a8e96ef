"""Whether an inventory's ``api_image`` agrees with the image the app's compose file
gives its api service, read from the local files (``validate`` runs nothing).

The rollback re-tags the image compose runs, which the run reads from
``docker compose config`` on the host (the runbooks' ``images`` step); an ``api_image``
that names another image means a hand-copied value went stale. Only a literal
``image:`` can be compared here: one built from ``${VARIABLES}`` is decided by the
env the run renders, and the run itself warns then.
"""

from __future__ import annotations

import os
from typing import Any

from deployer.errors import Position, Problem
from deployer.yamlsrc import load_yaml


def image_problems(variables: dict[str, Any], project_dir: str, host: str) -> list[Problem]:
    """A warning when ``api_image`` is set and the compose file's literal ``image:`` of
    ``api_service`` differs; nothing when either is unknown."""
    wanted = str(variables.get("api_image") or "")
    source = variables.get("app_source")
    if not wanted or "{{" in wanted or not source or "{{" in str(source):
        return []
    root = source if os.path.isabs(str(source)) else os.path.join(project_dir, str(source))
    service = str(variables.get("api_service") or "api")
    found: tuple[str, Position | None] | None = None
    for name in variables.get("compose_files") or ["docker-compose.yml"]:
        path = os.path.join(root, str(name))
        if "{{" in str(name) or not os.path.isfile(path):
            continue
        try:
            node = load_yaml(path)
        except Exception:  # noqa: BLE001 - a broken compose file is compose's to report
            return []
        services = node.get("services") if node.is_mapping else None
        entry = services.get(service) if services is not None and services.is_mapping else None
        image = entry.get("image") if entry is not None and entry.is_mapping else None
        if image is not None and isinstance(image.value, str):
            found = (image.value, image.pos)  # a later file overrides, as compose merges
    if found is None or "$" in found[0] or found[0] == wanted:
        return []
    return [Problem(
        f"host {host}: var api_image is {wanted!r} but the compose file gives service "
        f"{service} the image {found[0]!r}", found[1], severity="warning",
        hint="leave api_image empty (the run reads the image from `docker compose config`) "
             "or make the two agree: the rollback re-tags the image compose runs")]
