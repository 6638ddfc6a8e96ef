"""GET /api/health: process up and database reachable (used by the runbooks' verify step)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import __version__
from app.db import get_engine

router = APIRouter()


@router.get("/api/health")
def health() -> JSONResponse:
    body: dict[str, object] = {"version": __version__}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            # The revision tells a deploy which migration is live (NULL before the first).
            body["revision"] = conn.execute(
                text("SELECT version_num FROM alembic_version LIMIT 1")).scalar()
        body.update(status="healthy", database="ok")
        return JSONResponse(body, status_code=200)
    except SQLAlchemyError as exc:
        body.update(status="unhealthy", database="unreachable",
                    error=type(exc.orig or exc).__name__)
        return JSONResponse(body, status_code=503)
