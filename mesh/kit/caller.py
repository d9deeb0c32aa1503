"""Who is on the other end of the wire: client address, user agent, request and trace ids.

The trace id is the running span's (``interceptors/tracing.py`` continues the caller's
``traceparent``); nothing here parses W3C headers by hand.

The client address is the transport peer, unless the REST edge vouched for the call with
its own service token, in which case it is the ``x-forwarded-for`` the edge set. That
decision is made once per call, by the authentication wrapper
(``interceptors/auth.py``, which verifies the edge's token), and published with
:func:`client_address_is`; :meth:`CallerInfo.of` reads it, so audit entries, API-key
allow-lists and identity's sign-in limits all see the same address. ``x-user-agent``
(what the edge forwards for browsers, since gRPC replaces a client's user-agent) comes
before ``user-agent``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from mesh.forwarding import FORWARDED_FOR
from mesh.request_id import METADATA_KEY as REQUEST_ID_KEY
from mesh.request_id import accepted
from mesh.telemetry.tracing import current_trace_id

ADDRESS_MAX = 64
USER_AGENT_MAX = 512


@dataclasses.dataclass(frozen=True, slots=True)
class CallerInfo:
    """Where a request came from (for audit entries; never for authorisation).

    Attributes:
        client_address: the client's IP address.
        user_agent: the client's user agent, at most 512 characters.
        request_id: the ``x-request-id`` metadata when the mesh accepts it as a request id
            (``mesh.request_id.accepted``: the value every log line carries), else empty.
        trace_id: the trace id of the running span (32 hex digits; empty when not traced).

    """

    client_address: str = ""
    user_agent: str = ""
    request_id: str = ""
    trace_id: str = ""

    @classmethod
    def from_metadata(
        cls, metadata: Iterable[tuple[str, Any]], peer: str, *, client_address: str | None = None
    ) -> CallerInfo:
        """Parse invocation metadata and a gRPC peer string (``ipv4:10.0.0.1:5123``); trace id: the running span's.

        ``client_address`` is the address the call's trust decision settled on; without
        one, the transport peer's (``x-forwarded-for`` is never read here).
        """
        values: dict[str, str] = {}
        for key, value in metadata:
            if isinstance(value, str):
                values.setdefault(key.lower(), value)
        address = client_address if client_address is not None else peer_address(peer)
        user_agent = values.get("x-user-agent") or values.get("user-agent", "")
        # the same test the server wrapper applies before binding it for the log lines: an audit entry
        # never records a request id the logs would not carry (spaces, quotes, over-long values)
        request_id = accepted(values.get(REQUEST_ID_KEY, ""))
        return cls(address[:ADDRESS_MAX], user_agent[:USER_AGENT_MAX], request_id, current_trace_id())

    @classmethod
    def of(cls, context: Any) -> CallerInfo:
        """The caller of a running call (a ``grpc.aio.ServicerContext``)."""
        return cls.from_metadata(
            context.invocation_metadata() or (), str(context.peer() or ""), client_address=_client_address.get()
        )


_client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("vocelio_client_address", default=None)


@contextlib.contextmanager
def client_address_is(address: str) -> Iterator[None]:
    """Publish the trusted client address of the running call (the authentication wrapper does)."""
    token = _client_address.set(address)
    try:
        yield
    finally:
        _client_address.reset(token)


def bind_client_address(address: str) -> contextvars.Token[str | None]:
    """:func:`client_address_is` without a context manager; :func:`unbind_client_address` undoes it."""
    return _client_address.set(address)


def unbind_client_address(token: contextvars.Token[str | None]) -> None:
    """Undo the :func:`bind_client_address` that returned ``token``."""
    _client_address.reset(token)


def current_client_address() -> str:
    """The trusted client address of the running call (``""`` outside a call or when unknown)."""
    return _client_address.get() or ""


def trusted_client_address(metadata: Iterable[tuple[str, Any]], peer: str, *, vouched: bool) -> str:
    """The client address of a call: the edge's ``x-forwarded-for`` when ``vouched``, else the peer's.

    ``vouched`` means the call carried the edge's verified proxy token. A forwarded value
    that is not an IP address is ignored.
    """
    if vouched:
        for key, value in metadata:
            if key == FORWARDED_FOR and isinstance(value, str):
                candidate = value.split(",", 1)[0].strip()
                try:
                    return str(ipaddress.ip_address(candidate))
                except ValueError:
                    break
    return peer_address(peer)


def peer_address(peer: str) -> str:
    """The IP address in a gRPC peer string (``ipv4:1.2.3.4:80``, ``ipv6:[::1]:80``); ``""`` otherwise."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
    return ""
