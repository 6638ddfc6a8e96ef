"""POST /api/v1/login/access-token: OAuth2 password form -> bearer token; 400 if wrong."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import settings
from app.core.db import get_session
from app.core.security import create_access_token, verify_password
from app.models import User

router = APIRouter(tags=["login"])


@router.post("/login/access-token")
def login_access_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: Annotated[Session, Depends(get_session)],
) -> dict[str, str]:
    user = session.scalar(select(User).where(User.email == form.username.strip().lower()))
    if user is None or not verify_password(form.password, user.hashed_password):
        raise HTTPException(status_code=400, detail="Incorrect email or password")
    if not user.is_active:
        raise HTTPException(status_code=400, detail="Inactive user")
    cfg = settings()
    token = create_access_token(str(user.id), cfg.secret_key, cfg.access_token_expire_minutes)
    return {"access_token": token, "token_type": "bearer"}
