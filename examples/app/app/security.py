"""Password hashing (scrypt from hashlib) and HS256 JSON Web Tokens, standard library only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

# scrypt cost: ~50 ms and 16 MiB per hash, fine for a login endpoint.
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def create_token(subject: str, secret: str, ttl_seconds: int, **claims: object) -> str:
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": subject, "iat": now, "exp": now + ttl_seconds, **claims}
    signing_input = f"{_b64(_json(header))}.{_b64(_json(payload))}"
    return f"{signing_input}.{_b64(_sign(signing_input, secret))}"


def decode_token(token: str, secret: str) -> dict[str, object] | None:
    """Claims of a valid, unexpired token; None for anything else."""
    try:
        header_b64, payload_b64, sig_b64 = token.split(".")
        if not hmac.compare_digest(_unb64(sig_b64),
                                   _sign(f"{header_b64}.{payload_b64}", secret)):
            return None
        if json.loads(_unb64(header_b64)).get("alg") != "HS256":
            return None
        payload = json.loads(_unb64(payload_b64))
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or int(payload.get("exp", 0)) < time.time():
        return None
    return payload


def _sign(data: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), data.encode(), hashlib.sha256).digest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
