"""`python -m app.seed_admin`: create or update the admin user from ADMIN_EMAIL and
ADMIN_PASSWORD. Idempotent: a second run updates the password and flags, never duplicates.
The password is never printed."""

from __future__ import annotations

import os
import sys

from sqlalchemy import select

from app.db import session_factory
from app.models import AuditLog, User
from app.security import hash_password, verify_password


def seed(email: str, password: str) -> str:
    """Returns what happened: "created", "updated" or "unchanged"."""
    email = email.strip().lower()
    with session_factory()() as session:
        user = session.scalar(select(User).where(User.email == email))
        if user is None:
            session.add(User(email=email, password_hash=hash_password(password),
                             is_admin=True, is_active=True))
            outcome = "created"
        elif (verify_password(password, user.password_hash) and user.is_admin
              and user.is_active):
            return "unchanged"
        else:
            user.password_hash = hash_password(password)
            user.is_admin = user.is_active = True
            outcome = "updated"
        session.add(AuditLog(event=f"admin_{outcome}", detail=email))
        session.commit()
        return outcome


def main() -> int:
    email = os.environ.get("ADMIN_EMAIL", "")
    password = os.environ.get("ADMIN_PASSWORD", "")
    if not email or not password:
        print("seed_admin: ADMIN_EMAIL and ADMIN_PASSWORD must be set", file=sys.stderr)
        return 2
    if len(password) < 8:
        print("seed_admin: ADMIN_PASSWORD must have at least 8 characters", file=sys.stderr)
        return 2
    print(f"seed_admin: admin {email.strip().lower()} {seed(email, password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
