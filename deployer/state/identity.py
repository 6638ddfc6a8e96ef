"""Who runs and when: the operator's ``user@machine``, UTC timestamps, and run ids
(sortable by start time, unique across operators)."""

from __future__ import annotations

import getpass
import os
import re
import secrets as _random
import socket
from datetime import datetime, timezone

_RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9]{3}[0-9a-f]{4}$")


def now_iso() -> str:
    """UTC timestamp, second precision, ISO 8601 with a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def operator() -> str:
    """``user@machine`` of whoever runs deployer."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def new_run_id() -> str:
    """Sortable by start time (UTC, to the millisecond), unique across operators:
    ``20240131-142501-0734f9c2`` = date, time, milliseconds, 4 random hex digits."""
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}{_random.token_hex(2)}"


def is_run_id(text: str) -> bool:
    """Whether ``text`` is a whole run id (``new_run_id``'s form)."""
    return bool(_RUN_ID_RE.match(text))
