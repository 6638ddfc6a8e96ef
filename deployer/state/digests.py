"""What a record keeps of variables without holding them: values as JSON with every
string masked (``plain_value``), keyed digests that tell a resume whether a value
changed (``variable_digests``), and the project's digest key."""

from __future__ import annotations

import json
import os
import secrets as _random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployer.errors import UsageError


def plain_value(value: Any, mask: Callable[[str], str]) -> Any:
    """``value`` as JSON data with every string passed through ``mask``."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): plain_value(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v, mask) for v in value]
    return mask(str(value))


def variable_digests(variables: dict[str, Any], key: bytes) -> dict[str, str]:
    """name -> HMAC-SHA256 of the value under ``key`` (the project's ``digest_key``),
    truncated: equal values give equal digests, and a record alone cannot be used to
    guess a value (not even a short one such as a release tag)."""
    import hashlib
    import hmac

    out: dict[str, str] = {}
    for name, value in variables.items():
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
        out[str(name)] = hmac.new(key, f"{name}\0{text}".encode(), hashlib.sha256
                                  ).hexdigest()[:32]
    return out


def key_id(key: bytes) -> str:
    """A short public name of a digest key (to tell whether two records used one)."""
    import hashlib

    return hashlib.sha256(b"deployer-key-id\0" + key).hexdigest()[:12]


def read_or_create_key(path: Path) -> bytes:
    """The random key in ``path`` (mode 0600), created on first use; when another
    deployer creates it at the same moment, theirs is used."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _random.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another deployer created it first: use theirs
        for _ in range(50):  # it may not have written the key yet
            data = path.read_bytes()
            if len(data) >= 32:
                return data
            time.sleep(0.01)
        raise UsageError(f"{path} is not a valid key file",
                         hint="remove it; deployer creates a new one") from None
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
