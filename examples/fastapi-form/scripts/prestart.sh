#!/usr/bin/env bash
# Run once before the backend starts: wait for the database, migrate, seed (create-only).
set -euo pipefail
python -m app.backend_pre_start
alembic upgrade head
python -m app.initial_data
