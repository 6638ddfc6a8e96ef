"""`python -m app.initial_data`: create FIRST_SUPERUSER if missing. Create-only.

An existing user is never changed, so a new FIRST_SUPERUSER_PASSWORD does not reach it
(the template this mirrors behaves the same). Never prints the password."""

from __future__ import annotations

import sys

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import settings
from app.core.db import engine
from app.core.security import hash_password
from app.models import User


def main() -> int:
    cfg = settings()
    email = cfg.first_superuser.strip().lower()
    with Session(engine()) as session:
        if session.scalar(select(User).where(User.email == email)) is not None:
            print(f"initial_data: {email} exists (unchanged)")
            return 0
        session.add(User(email=email, hashed_password=hash_password(cfg.first_superuser_password),
                         is_active=True, is_superuser=True))
        session.commit()
    print(f"initial_data: {email} created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
