"""FastAPI application object: `app.main:app`."""

from fastapi import FastAPI

from app import __version__
from app.api.main import api_router

app = FastAPI(title="fastapi-form example", version=__version__,
              openapi_url="/api/v1/openapi.json")
app.include_router(api_router, prefix="/api/v1")
