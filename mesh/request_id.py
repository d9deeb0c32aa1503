"""The request id of the running call (``x-request-id``), carried through every hop.

The REST edge accepts a client's ``X-Request-Id`` when it is a sane token (:func:`accepted`)
and otherwise makes one (:func:`new`); it sends it upstream and returns it in the response.
A service's server wrapper (``interceptors/request_id.py``) publishes the incoming value
with :func:`bound` for the whole call; the client interceptor
(``interceptors/client_request_id.py``) puts it on every outgoing call, and the log set-up
(``mesh/logs.py``) writes it into every record. It is logged, so only a short value of
plain characters is ever believed: anything else counts as no request id at all.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator

METADATA_KEY = "x-request-id"
MAX_LENGTH = 128
# UUIDs, ULIDs, hex, base64(url) and the usual "Root=1-…"-style ids; no spaces, quotes or controls.
_ACCEPTED = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("vocelio_request_id", default="")


def accepted(value: str | None) -> str:
    """``value`` when it is a request id the mesh carries and logs, else ``""``.

    At most :data:`MAX_LENGTH` characters of letters, digits and ``._~:/+=@-``.
    """
    if value and _ACCEPTED.fullmatch(value):
        return value
    return ""


def for_request(header: str | None) -> str:
    """The request id the edge uses for a request whose ``X-Request-Id`` is ``header``: it, or a new one."""
    return accepted(header) or new()


def new() -> str:
    """A fresh request id (32 hex digits), for a request that arrived without one."""
    return uuid.uuid4().hex


def current() -> str:
    """The request id of the running call, or ``""`` outside a call or when it came without one."""
    return _current.get()


@contextlib.contextmanager
def bound(request_id: str) -> Iterator[None]:
    """Make ``request_id`` the running call's for the block."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


def bind(request_id: str) -> contextvars.Token[str]:
    """Make ``request_id`` the running call's until :func:`unbind` (the server wrapper's cheaper :func:`bound`)."""
    return _current.set(request_id)


def unbind(token: contextvars.Token[str]) -> None:
    """Undo the :func:`bind` that returned ``token``."""
    _current.reset(token)
