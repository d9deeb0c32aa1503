"""Server side: past a number of running calls, refuse new ones at once, before any work.

An overloaded process that queues more work only gets slower for everyone; refusing early
lets the caller go elsewhere or come back. A call arriving while ``limit`` handlers are
running is UNAVAILABLE with a ``google.rpc.RetryInfo`` (and ``grpc-retry-pushback-ms``):
the code Envoy's overload manager (a 503 local reply) and gRPC's own "server overloaded"
use, which clients retry on another replica, rather than RESOURCE_EXHAUSTED, which reads
as "your quota" (gRPC status codes guide). Health and reflection are never shed, so
probes keep seeing the truth. The count is :class:`interceptors.inflight.InFlightCalls`'
own; the check is one comparison per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from interceptors.auth import INFRASTRUCTURE
from interceptors.chain import Behaviour, Check, Guard, WrapperInterceptor
from mesh.errors import Unavailable

# What a refused caller is told to wait: overload is usually over in moments.
RETRY_DELAY = 1.0


def shedding(running: Callable[[], int], limit: int) -> Guard:
    """The guard that refuses a call while ``running()`` calls are at ``limit`` (0: never)."""

    def check(_request: Any, _context: Any) -> None:
        if running() >= limit:
            raise overloaded(limit)

    def check_for(path: str, _behaviour: Behaviour) -> Check | None:
        if limit <= 0 or path.startswith(INFRASTRUCTURE):
            return None
        return check

    return Guard(check_for)


def overloaded(limit: int) -> Unavailable:
    """The error of a shed call."""
    return Unavailable(f"the service is overloaded ({limit} calls running); retry shortly").with_retry_delay(
        RETRY_DELAY
    )


class LoadSheddingInterceptor(WrapperInterceptor):
    """:func:`shedding` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self, running: Callable[[], int], limit: int) -> None:
        super().__init__(shedding(running, limit))
