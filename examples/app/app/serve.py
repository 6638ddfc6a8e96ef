"""Container entry point: `python -m app.serve` runs uvicorn with settings from the env."""

from __future__ import annotations

import uvicorn

from app import config


def main() -> None:
    settings = config.load()  # fail at start, not at the first request, on a missing setting
    uvicorn.run(
        "app.main:app",
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.workers,
        log_level=settings.log_level,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
