"""Settings from the environment, under the names the full-stack FastAPI template uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote


class ConfigError(RuntimeError):
    """A required setting is missing."""


def _require(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value


@dataclass(frozen=True)
class Settings:
    project_name: str
    secret_key: str
    access_token_expire_minutes: int
    first_superuser: str
    first_superuser_password: str
    postgres_server: str
    postgres_port: int
    postgres_user: str
    postgres_password: str
    postgres_db: str

    @property
    def database_url(self) -> str:
        # psycopg 3; the password may hold any character, so it is percent-encoded
        return (f"postgresql+psycopg://{quote(self.postgres_user, safe='')}:"
                f"{quote(self.postgres_password, safe='')}@{self.postgres_server}:"
                f"{self.postgres_port}/{self.postgres_db}")


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings(
        project_name=os.environ.get("PROJECT_NAME", "fastapi-form"),
        secret_key=_require("SECRET_KEY"),
        access_token_expire_minutes=int(os.environ.get("ACCESS_TOKEN_EXPIRE_MINUTES", "60")),
        first_superuser=_require("FIRST_SUPERUSER"),
        first_superuser_password=_require("FIRST_SUPERUSER_PASSWORD"),
        postgres_server=_require("POSTGRES_SERVER"),
        postgres_port=int(os.environ.get("POSTGRES_PORT", "5432")),
        postgres_user=_require("POSTGRES_USER"),
        postgres_password=_require("POSTGRES_PASSWORD"),
        postgres_db=_require("POSTGRES_DB"),
    )
