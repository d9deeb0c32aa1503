"""Process secrets: from the environment in production, generated under ``var/`` in development.

A generated secret is written once (mode 0600) and read by every process of the mesh
afterwards, so all of them agree. Secrets never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import base64
import os
import pathlib
import secrets


def load_or_create(path: pathlib.Path, *, size: int = 32) -> str:
    """The secret stored at ``path``, creating it (random, base64url) if absent.

    Concurrent first calls from several processes agree: exactly one creates the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):
            value = path.read_text().strip()
            if value:
                return value
            # Another process created it a moment ago and is still writing.
            import time

            time.sleep(0.01)
        raise RuntimeError(f"{path} exists but is empty") from None
    value = base64.urlsafe_b64encode(secrets.token_bytes(size)).decode().rstrip("=")
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
