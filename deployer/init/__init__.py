"""``deployer init``: inspect an app and write a starting inventory for the shipped
runbooks, a secrets template and ``.gitignore`` entries (optionally, local copies of the
runbooks to customise).

``detect`` reads the app (compose files, Dockerfile, ``alembic.ini``/``manage.py``,
routes) and returns data; ``render`` turns it into file contents; ``write`` puts them on
disk without overwriting anything the user changed. ``init_project`` ties them together
and returns what happened, for the CLI to show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from deployer import shipped
from deployer.errors import UsageError
from deployer.init.detect import Detection, detect
from deployer.init.render import (
    GITIGNORE_LINES,
    SECRETS_FILE,
    SECRETS_TEMPLATE,
    inventory_text,
    relative_source,
    secrets_of,
    secrets_template,
)
from deployer.init.write import Outcome, copy_tree, ensure_lines, write_file

INVENTORY_FILE = "inventory.yml"


@dataclass
class InitResult:
    detection: Detection
    outcomes: list[Outcome]
    secret_names: list[str]
    next_commands: list[str]


def init_project(app_dir: str, project_dir: str, copy_runbooks: bool = False,
                 inventory_name: str = INVENTORY_FILE) -> InitResult:
    """Inspect ``app_dir`` and write the files into ``project_dir``."""
    det = detect(app_dir)
    source = relative_source(app_dir, project_dir)
    outcomes = [
        write_file(os.path.join(project_dir, inventory_name), inventory_text(det, source)),
        write_file(os.path.join(project_dir, SECRETS_TEMPLATE), secrets_template(det)),
        ensure_lines(os.path.join(project_dir, ".gitignore"), GITIGNORE_LINES,
                     "# deployer: secrets and local run records"),
    ]
    if copy_runbooks:
        for kind in shipped.KINDS:
            root = shipped.packaged_root(kind)
            if root is None:
                raise UsageError("this installation carries no packaged runbooks to copy",
                                 hint="reinstall deployer from its wheel")
            dest = shipped.project_root(project_dir, kind)
            if os.path.realpath(dest) == os.path.realpath(root):
                continue  # the project is deployer's own source tree
            outcomes.extend(copy_tree(root, dest))
    inv = ["deployer", "validate"] if inventory_name == INVENTORY_FILE else \
        ["deployer", "-i", inventory_name, "validate"]
    plan = inv[:-1] + ["plan", "first-time", "--host", "vps"]
    run = inv[:-1] + ["run", "first-time", "--host", "vps", "--secrets-file", SECRETS_FILE]
    return InitResult(det, outcomes, [s.name for s in secrets_of(det)],
                      [" ".join(inv), " ".join(plan), " ".join(run)])


__all__ = ["InitResult", "init_project", "detect", "INVENTORY_FILE"]
