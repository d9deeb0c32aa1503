"""Per-service credentials, derived from the mesh's master secret.

Identity alone holds the master secret (``VOCELIO_SERVICE_SECRET``); the supervisor
derives each child's credential and hands it only that one (``VOCELIO_SERVICE_CREDENTIAL``).
A credential lets its holder obtain a token for its own ``services/<name>`` and nothing
else, so one leaked process cannot speak as another. The REST edge is ``services/edge``:
its token carries no permission, it only vouches for the client addresses it forwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

EDGE = "edge"
_CONTEXT = "vocelio-service:"


def derive(master: str, name: str) -> str:
    """The credential of service ``name``: HMAC-SHA256(master, "vocelio-service:" + name), base64url."""
    digest = hmac.new(master.encode(), (_CONTEXT + name).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def matches(master: str, name: str, presented: str) -> bool:
    """Whether ``presented`` is the credential of ``name`` (constant time)."""
    return hmac.compare_digest(presented.encode(), derive(master, name).encode())
