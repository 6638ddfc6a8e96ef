"""FastAPI application object: `app.main:app`."""

from __future__ import annotations

from fastapi import FastAPI

from app import __version__
from app.routes import auth, health

app = FastAPI(title="deployer example app", version=__version__)
app.include_router(health.router)
app.include_router(auth.router)
