"""The /api/v1 router."""

from fastapi import APIRouter

from app.api.routes import login, utils, version

api_router = APIRouter()
api_router.include_router(login.router)
api_router.include_router(utils.router)
api_router.include_router(version.router)
