"""Engine and sessions, created on first use so importing the app never connects."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from app.core.config import settings


@lru_cache(maxsize=1)
def engine() -> Engine:
    return create_engine(settings().database_url, pool_pre_ping=True,
                         connect_args={"connect_timeout": 5})


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request."""
    with Session(engine()) as session:
        yield session
