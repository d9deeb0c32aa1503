"""Who is on the other end of the wire: client address, user agent, request and trace ids.

One parser for every service, with today's trust rules: the first ``x-forwarded-for`` hop
when present (the edge sets it), else the transport peer; ``x-user-agent`` (what an edge
forwards for browsers, since gRPC replaces a client's user-agent) before ``user-agent``.
A later issue hardens which hops are trusted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

ADDRESS_MAX = 64
USER_AGENT_MAX = 512
REQUEST_ID_MAX = 128


@dataclasses.dataclass(frozen=True, slots=True)
class CallerInfo:
    """Where a request came from (for audit entries; never for authorisation).

    Attributes:
        client_address: the client's IP address.
        user_agent: the client's user agent, at most 512 characters.
        request_id: the ``x-request-id`` metadata.
        trace_id: the W3C trace id from ``traceparent``.

    """

    client_address: str = ""
    user_agent: str = ""
    request_id: str = ""
    trace_id: str = ""

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, Any]], peer: str) -> CallerInfo:
        """Parse invocation metadata and a gRPC peer string (``ipv4:10.0.0.1:5123``)."""
        values: dict[str, str] = {}
        for key, value in metadata:
            if isinstance(value, str):
                values.setdefault(key.lower(), value)
        forwarded = values.get("x-forwarded-for", "").split(",", 1)[0].strip()
        address = forwarded or peer_address(peer)
        user_agent = values.get("x-user-agent") or values.get("user-agent", "")
        parts = values.get("traceparent", "").split("-")
        trace_id = parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""
        request_id = values.get("x-request-id", "")[:REQUEST_ID_MAX]
        return cls(address[:ADDRESS_MAX], user_agent[:USER_AGENT_MAX], request_id, trace_id)

    @classmethod
    def of(cls, context: Any) -> CallerInfo:
        """The caller of a running call (a ``grpc.aio.ServicerContext``)."""
        return cls.from_metadata(context.invocation_metadata() or (), str(context.peer() or ""))


def peer_address(peer: str) -> str:
    """The IP address in a gRPC peer string (``ipv4:1.2.3.4:80``, ``ipv6:[::1]:80``); ``""`` otherwise."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
    return ""
