"""fastapi-form example backend: OAuth2 password-form login, bare-JSON health, Alembic."""

__version__ = "1.0.0"
