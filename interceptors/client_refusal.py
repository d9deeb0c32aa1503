"""Client side: the status of a call the client refuses to send, and the count of refusals.

The deadline, breaker and bulkhead interceptors fail a call locally, before it reaches the
transport, with an ordinary ``grpc.aio.AioRpcError``: callers handle it exactly like the
same status from the upstream (``mesh.kit.client_errors``). Each refusal is counted in
``vocelio_client_rejected_total{caller,upstream,reason}`` on the default Prometheus registry.
"""

from __future__ import annotations

import grpc
from prometheus_client import Counter

REJECTED = Counter(
    "vocelio_client_rejected_total",
    "Outgoing calls failed locally without being sent (reason: deadline, circuit_open, bulkhead_full).",
    ["caller", "upstream", "reason"],
)


def refusal(caller: str, upstream: str, reason: str, code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    """The error a refused call raises (counted as ``reason``)."""
    REJECTED.labels(caller=caller, upstream=upstream, reason=reason).inc()
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=message, debug_error_string=message
    )


def method_name(method: str | bytes) -> str:
    """A client call's method path as text (grpc.aio passes bytes)."""
    return method.decode() if isinstance(method, bytes) else method


def both_keys(paths: dict[str, float]) -> dict[str | bytes, float]:
    """The mapping keyed by path text and by its bytes, so a call's ``details.method`` finds it as is."""
    keyed: dict[str | bytes, float] = {}
    for path, value in paths.items():
        keyed[path] = value
        keyed[path.encode()] = value
    return keyed
