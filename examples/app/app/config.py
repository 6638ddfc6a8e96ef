"""Settings read from the environment (the .env file rendered by the runbook)."""

from __future__ import annotations

import os
from dataclasses import dataclass


class ConfigError(RuntimeError):
    """A required setting is missing or invalid."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    jwt_secret: str
    jwt_ttl_seconds: int
    api_host: str
    api_port: int
    workers: int
    log_level: str


def _require(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value


def database_url() -> str:
    url = _require("DATABASE_URL")
    # SQLAlchemy picks psycopg2 for a bare postgresql:// URL; the image ships psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def load() -> Settings:
    return Settings(
        database_url=database_url(),
        jwt_secret=_require("JWT_SECRET"),
        jwt_ttl_seconds=int(os.environ.get("JWT_TTL_SECONDS", "3600")),
        api_host=os.environ.get("API_HOST", "127.0.0.1"),
        api_port=int(os.environ.get("API_PORT", "8000")),
        workers=int(os.environ.get("WEB_CONCURRENCY", "1")),
        log_level=os.environ.get("LOG_LEVEL", "info"),
    )
