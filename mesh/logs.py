"""The one logging set-up of every Vocelio process: one line per record, to stderr."""

from __future__ import annotations

import logging
import sys


def configure(level: str, process: str) -> None:
    """Send log records to stderr as ``time level process logger: message`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # SQLAlchemy and uvicorn are chatty at INFO; their warnings still come through.
    for noisy in ("sqlalchemy", "alembic.runtime.migration", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
