"""`python -m app.backend_pre_start`: wait (up to 60 s) until the database accepts queries."""

from __future__ import annotations

import sys
import time

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.core.db import engine


def main() -> int:
    deadline = time.monotonic() + 60
    while True:
        try:
            with engine().connect() as conn:
                conn.execute(text("SELECT 1"))
            print("backend_pre_start: database ready")
            return 0
        except SQLAlchemyError as exc:
            if time.monotonic() > deadline:
                print(f"backend_pre_start: database not ready: {type(exc).__name__}",
                      file=sys.stderr)
                return 1
            time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
