"""GET /api/v1/utils/version/: the running code's version and live Alembic revision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import __version__
from app.core.db import get_session

router = APIRouter(prefix="/utils", tags=["utils"])


@router.get("/version/")
def version(session: Annotated[Session, Depends(get_session)]) -> dict[str, str | None]:
    revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return {"version": __version__, "revision": revision}
