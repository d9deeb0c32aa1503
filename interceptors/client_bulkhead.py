"""Client side: a bulkhead per upstream — at most ``client_max_concurrency`` unary calls in flight.

A slow upstream then ties up a bounded share of the caller, not all of its tasks and
memory. A call over the limit is not queued: it fails at once with RESOURCE_EXHAUSTED,
which gRPC's own conventions use for a local resource limit (``doc/statuscodes.md``: the
client ran out of a resource). It is not UNAVAILABLE on purpose: the mesh's retry policy
retries UNAVAILABLE only, so a full bulkhead never turns into a retry storm, and the
circuit breaker does not count it against the upstream (it carries no shed marker).
Server streams are long-lived and are not counted.
"""

from __future__ import annotations

from typing import Any

import grpc

from interceptors.client_refusal import method_name, refusal


class Bulkhead:
    """The in-flight count of the calls to one upstream."""

    def __init__(self, caller: str, upstream: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("a bulkhead needs room for at least one call")
        self.caller = caller
        self.upstream = upstream
        self.limit = limit
        self.active = 0


class UnaryBulkheadInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Lets at most ``limit`` unary calls to the upstream run at once."""

    def __init__(self, bulkhead: Bulkhead) -> None:
        self._bulkhead = bulkhead

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Send the call if there is room, holding a slot until it ends; refuse it otherwise."""
        bulkhead = self._bulkhead
        if bulkhead.active >= bulkhead.limit:
            raise refusal(
                bulkhead.caller,
                bulkhead.upstream,
                "bulkhead_full",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{bulkhead.limit} calls to {bulkhead.upstream} are already in flight, so "
                f"{method_name(client_call_details.method)} was not sent; retry shortly",
            )
        bulkhead.active += 1
        try:
            call = await continuation(client_call_details, request)
            await call.code()  # the slot is held until the call has ended
        finally:
            bulkhead.active -= 1
        return call


def client_bulkhead_interceptors(bulkhead: Bulkhead) -> list[Any]:
    """The interceptor that bounds the upstream's unary calls (streams are not counted)."""
    return [UnaryBulkheadInterceptor(bulkhead)]
