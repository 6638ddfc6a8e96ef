"""Engine and session factory, created lazily so importing the app never connects."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from app import config


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return create_engine(
        config.database_url(),
        pool_pre_ping=True,  # survive a postgres restart between requests
        pool_size=5,
        connect_args={"connect_timeout": 5},
    )


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request."""
    session = session_factory()()
    try:
        yield session
    finally:
        session.close()
