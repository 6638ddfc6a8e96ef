"""Example app deployed by deployer's runbooks: FastAPI + SQLAlchemy 2 + Alembic on Postgres.

Importing the package must stay cheap and side-effect free (no DB connection): the image
build runs ``python -c "import app, alembic.config"`` to fail fast on a broken install.
"""

__version__ = "1.0.0"
