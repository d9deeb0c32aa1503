"""Server side: publish the running call's deadline, so outgoing calls can inherit it.

gRPC Python does not propagate deadlines by itself. This wrapper reads the call's
remaining time once, when the handler starts, and stores the absolute instant in
:data:`mesh.resilience.deadlines.CALLER_DEADLINE`; ``interceptors/client_deadline.py`` gives
every call the handler makes downstream what is left of it (less a margin). One
``time_remaining()`` and one context variable per call: it sits outside authentication so
even the identity look-ups authentication makes inherit the budget.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from interceptors.chain import Behaviour
from mesh.resilience.deadlines import CALLER_DEADLINE


def with_deadline(_method: str, behaviour: Behaviour) -> Behaviour:
    """The behaviour with the call's deadline published in ``CALLER_DEADLINE`` while it runs."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            remaining = context.time_remaining()
            if remaining is not None:  # the handler runs in a task of its own, whose context ends with it
                CALLER_DEADLINE.set(time.monotonic() + remaining)
            async for response in behaviour(request, context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        remaining = context.time_remaining()
        if remaining is None:  # each call starts in a fresh task context, where the variable is unset
            return await behaviour(request, context)
        token = CALLER_DEADLINE.set(time.monotonic() + remaining)
        try:
            return await behaviour(request, context)
        finally:
            CALLER_DEADLINE.reset(token)

    return call
