"""POST /api/v1/auth/login and GET /api/v1/auth/me, backed by the users table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import config
from app.db import get_session
from app.models import AuditLog, User
from app.security import create_token, decode_token, hash_password, verify_password

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

DbSession = Annotated[Session, Depends(get_session)]

# Verified when the email is unknown too, so timing does not reveal which emails exist.
_DUMMY_HASH = hash_password("not-a-real-password")


class LoginRequest(BaseModel):
    email: str
    password: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class Me(BaseModel):
    id: int
    email: str
    is_admin: bool


@router.post("/login", response_model=TokenResponse)
def login(body: LoginRequest, session: DbSession) -> TokenResponse:
    settings = config.load()
    email = body.email.strip().lower()
    user = session.scalar(select(User).where(User.email == email))
    ok = verify_password(body.password, user.password_hash if user else _DUMMY_HASH)
    if not (ok and user is not None and user.is_active):
        session.add(AuditLog(user_id=user.id if user else None, event="login_failed",
                             detail=email))
        session.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid email or password",
                            headers={"WWW-Authenticate": "Bearer"})
    session.add(AuditLog(user_id=user.id, event="login", detail=None))
    session.commit()
    token = create_token(str(user.id), settings.jwt_secret, settings.jwt_ttl_seconds,
                         email=user.email, admin=user.is_admin)
    return TokenResponse(access_token=token, expires_in=settings.jwt_ttl_seconds)


@router.get("/me", response_model=Me)
def me(session: DbSession, authorization: Annotated[str, Header()] = "") -> Me:
    scheme, _, token = authorization.partition(" ")
    claims = decode_token(token, config.load().jwt_secret) if scheme.lower() == "bearer" else None
    user = session.get(User, int(str(claims["sub"]))) if claims else None
    if user is None or not user.is_active:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or expired token",
                            headers={"WWW-Authenticate": "Bearer"})
    return Me(id=user.id, email=user.email, is_admin=user.is_admin)
