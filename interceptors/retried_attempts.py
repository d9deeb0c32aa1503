"""Server side: count the calls that are gRPC retries of an earlier attempt.

gRPC core retries below the client interceptors (``mesh/service_config.py``), so no client
code sees the attempts; but every retried attempt carries ``grpc-previous-rpc-attempts``
(gRFC A6), which the server can count. ``vocelio_server_retried_attempts_total{method}``
on the process's default Prometheus registry is that count. The metadata is scanned only
for its key: a handful of comparisons per call.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import Counter

from interceptors.chain import Behaviour

PREVIOUS_ATTEMPTS = "grpc-previous-rpc-attempts"

RETRIED_ATTEMPTS = Counter(
    "vocelio_server_retried_attempts_total",
    "Calls received that are gRPC retries of an earlier attempt (grpc-previous-rpc-attempts).",
    ["method"],
)


def _is_retry(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    # A plain loop, not any(...): no generator object per call.
    for key, _ in context.invocation_metadata() or ():  # noqa: SIM110
        if key == PREVIOUS_ATTEMPTS:
            return True
    return False


def counting_retries(method: str, behaviour: Behaviour) -> Behaviour:
    """The behaviour, counting in ``vocelio_server_retried_attempts_total`` the calls that are retries."""
    retried = RETRIED_ATTEMPTS.labels(method=method)

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if _is_retry(context):
                retried.inc()
            async for response in behaviour(request, context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if _is_retry(context):
            retried.inc()
        return await behaviour(request, context)

    return call
