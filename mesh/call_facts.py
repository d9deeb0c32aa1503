"""What the server learned about the running call: its metadata, and its caller for the per-RPC log line.

grpc.aio converts a call's metadata into Python objects anew on every
``context.invocation_metadata()`` (~3.5 µs for a token and a user agent), and several
wrappers read it (request id, retry count, authentication, tracing): they ask
:func:`invocation_metadata`, which converts it once per call.

The RPC log wrapper (``interceptors/rpc_log.py``) runs outside authentication, so that
refused calls get a line too, and the principal and client address the authentication
wrapper settles are reset by the time the call ends. That wrapper therefore opens a
:class:`CallFacts` for the call (:func:`begin`, :func:`end`) and the authentication wrapper notes
what it settled in it (:func:`note_caller`), which costs nothing when no one records.
"""

from __future__ import annotations

import contextvars
import dataclasses
from typing import Any

from mesh.principal import Principal

Entries = tuple[tuple[str, str | bytes], ...]


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
# (the servicer context, its metadata): grpc.aio runs each call in a task of its own, whose context
# this lives in; the context is compared, so a stale entry (a test running calls in one task) is never used.
_metadata: contextvars.ContextVar[tuple[Any, Entries] | None] = contextvars.ContextVar(
    "vocelio_call_metadata", default=None
)


def invocation_metadata(context: Any) -> Entries:
    """The call's invocation metadata (every entry, in order), read from ``context`` once per call."""
    cached = _metadata.get()
    if cached is not None and cached[0] is context:
        return cached[1]
    entries: Entries = tuple(context.invocation_metadata() or ())
    _metadata.set((context, entries))
    return entries


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
