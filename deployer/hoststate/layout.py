"""Where an app's state lives on its host.

Var ``host_state_dir`` (absolute, or ``~/...`` for the SSH user's home) if set, otherwise
``~/.local/state/deployer/apps/<app_name>`` (``$XDG_STATE_HOME`` when the host sets it,
as for the lock). The name follows the app, not the runbook or the inventory's host name,
so ``first-time``, ``restart`` and ``rollback`` from any checkout append to one history.
"""

from __future__ import annotations

import re
from typing import Any

from deployer.errors import InputError
from deployer.lock import checked_lock_path

STATE_ROOT = "~/.local/state/deployer/apps"

_APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def state_dir(variables: dict[str, Any]) -> str:
    """The host state directory for these (merged) variables."""
    configured = variables.get("host_state_dir")
    if configured:
        return checked_lock_path(str(configured), var="host_state_dir",
                                 example="/srv/deployer-state/app")
    app = str(variables.get("app_name") or "default")
    if not _APP_RE.match(app):
        raise InputError(f"app_name {app!r} cannot name the host state directory",
                         hint="use letters, digits, '.', '_' or '-' (at most 64), or set "
                              "var host_state_dir")
    return f"{STATE_ROOT}/{app}"
