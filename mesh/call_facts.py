"""What the server learned about the running call, for the per-RPC log line.

The RPC log wrapper (``interceptors/rpc_log.py``) runs outside authentication, so that
refused calls get a line too, and the principal and client address the authentication
wrapper settles are reset by the time the call ends. That wrapper therefore opens a
:class:`CallFacts` for the call (:func:`begin`, :func:`end`) and the authentication wrapper notes
what it settled in it (:func:`note_caller`), which costs nothing when no one records.
"""

from __future__ import annotations

import contextvars
import dataclasses

from mesh.principal import Principal


@dataclasses.dataclass(slots=True)
class CallFacts:
    """The caller of one call, as far as the server got.

    Attributes:
        principal: the authenticated principal (``None``: public, or refused before).
        client_address: the client address the call's trust decision settled on.

    """

    principal: Principal | None = None
    client_address: str = ""


_current: contextvars.ContextVar[CallFacts | None] = contextvars.ContextVar("vocelio_call_facts", default=None)


def begin() -> tuple[CallFacts, contextvars.Token[CallFacts | None]]:
    """Start collecting the facts of the running call; :func:`end` stops."""
    facts = CallFacts()
    return facts, _current.set(facts)


def end(token: contextvars.Token[CallFacts | None]) -> None:
    """Stop the collecting :func:`begin` started."""
    _current.reset(token)


def note_caller(principal: Principal | None, client_address: str) -> None:
    """Record the call's principal and client address, if someone is recording."""
    facts = _current.get()
    if facts is not None:
        facts.principal = principal
        facts.client_address = client_address
