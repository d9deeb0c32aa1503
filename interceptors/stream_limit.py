"""Server side: one principal holds at most so many server streams of a service open at once.

STREAM-class methods (watches, event subscriptions, synthesis streams) are long-lived, so
their budget is concurrency, not rate (``policy.proto``). A stream past the limit is
RESOURCE_EXHAUSTED with a ``google.rpc.QuotaFailure`` before the handler runs; its slot is
given back when the stream ends, however it ends. Public streams count per client address.
Service principals are not limited (identity's revocation stream is held by every service).
Runs after authentication; methods of other classes are not wrapped.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Hashable
from typing import Any

import grpc

from interceptors.auth import INFRASTRUCTURE
from interceptors.chain import Behaviour, Wrapper, WrapperInterceptor
from mesh.errors import ResourceExhausted
from mesh.kit.caller import current_client_address
from mesh.limits.streams import StreamSlots
from mesh.principal import current_or_none
from mesh.registry import Registry
from vocelio.api.v1 import policy_pb2

STREAM = policy_pb2.RATE_LIMIT_CLASS_STREAM


def stream_limited(registry: Registry, slots: StreamSlots, service: str = "") -> Wrapper:
    """The wrapper that refuses a STREAM method's call while its principal holds ``slots.limit`` streams."""

    def wrap(path: str, behaviour: Behaviour) -> Behaviour:
        if path.startswith(INFRASTRUCTURE):
            return behaviour
        method = registry.method(path)
        if method is None or method.policy is None or method.policy.rate_limit_class != STREAM:
            return behaviour
        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                key = _key()
                if key is None:
                    async for response in behaviour(request, context):
                        yield response
                    return
                if not slots.acquire(key):
                    raise _refusal(key, slots.limit, service)
                try:
                    async for response in behaviour(request, context):
                        yield response
                finally:
                    slots.release(key)

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            key = _key()
            if key is None:
                return await behaviour(request, context)
            if not slots.acquire(key):
                raise _refusal(key, slots.limit, service)
            try:
                return await behaviour(request, context)
            finally:
                slots.release(key)

        return call

    return wrap


def _key() -> tuple[str, str] | None:
    principal = current_or_none()
    if principal is None:
        return ("", "client:" + current_client_address())
    if principal.is_service:
        return None
    return (principal.organization_id, principal.subject)


def _refusal(key: Hashable, limit: int, service: str) -> ResourceExhausted:
    subject = str(key[1]) if isinstance(key, tuple) else str(key)
    where = f" to {service}" if service else ""
    return ResourceExhausted(
        f"too many open streams{where}: at most {limit} at once; close one before opening another"
    ).with_quota_violation(subject, f"concurrent STREAM calls{where}: at most {limit} per principal")


class StreamLimitInterceptor(WrapperInterceptor):
    """:func:`stream_limited` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self, registry: Registry, slots: StreamSlots, service: str = "") -> None:
        super().__init__(stream_limited(registry, slots, service))
