"""Compose the server's per-call behaviours once per method, at registration.

grpc.aio's interceptor chain runs every interceptor on every call: each one awaits the
continuation, re-resolves the method's handler, looks the method up in the registry and
builds fresh closures around its behaviour. All of that depends only on the method, so
here each concern is a :data:`Wrapper` — ``wrapper(path, behaviour) -> behaviour`` — and
:class:`ChainedServer` applies the wrappers to each method's behaviour when a servicer is
added, once. A call then runs only the checks themselves. A wrapper returns the
behaviour unchanged for methods it does not apply to (a public method needs no
authentication), so those pay nothing at all.

Most concerns only check something before the behaviour runs and do nothing after it (load
shedding, in-flight tracking, the retry count, the rate limit, RBAC). Such a concern is a
:class:`Guard`: at composition it gives, per method, a :data:`Check` (or ``None``: nothing to
check), and :func:`compose` runs the checks of adjacent guards in one layer rather than one
coroutine each — each layer costs a coroutine, a frame and an ``await`` on every call. A guard
used alone is still an ordinary wrapper. Each concern keeps its own file; only the layering is
shared.

:class:`WrapperInterceptor` turns one wrapper into an ordinary per-call interceptor, for
servers built without :class:`ChainedServer` (tests, benchmarks); the rule itself lives
only in the wrapper.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc

Behaviour = Callable[..., Any]
Wrapper = Callable[[str, Behaviour], Behaviour]
"""``wrapper(method_path, behaviour)``: the behaviour to run instead (or the same one)."""
Check = Callable[[Any, Any], Awaitable[None] | None]
"""``check(request, context)`` before the behaviour: raise to refuse the call; may return an awaitable."""


class Guard:
    """A wrapper whose per-call work is one check before the behaviour, and nothing after it.

    ``check_for(path, behaviour)`` decides at composition what a method's calls are checked
    with (``None``: nothing). The check runs synchronously; when it returns an awaitable (a
    check that must wait, which the hot paths avoid) that is awaited before the behaviour.
    """

    __slots__ = ("check_for",)

    def __init__(self, check_for: Callable[[str, Behaviour], Check | None]) -> None:
        self.check_for = check_for

    def __call__(self, path: str, behaviour: Behaviour) -> Behaviour:
        """The behaviour behind this guard's check alone (for use outside :func:`compose`)."""
        check = self.check_for(path, behaviour)
        return behaviour if check is None else checked(behaviour, (check,))


def checked(behaviour: Behaviour, checks: Sequence[Check]) -> Behaviour:
    """One layer: ``checks`` in order, then the behaviour (an async function or an async generator)."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            for check in checks:
                pending = check(request, context)
                if pending is not None:
                    await pending
            async for response in behaviour(request, context):
                yield response

        return stream

    if len(checks) == 1:
        (only,) = checks

        async def call_one(request: Any, context: Any) -> Any:
            pending = only(request, context)
            if pending is not None:
                await pending
            return await behaviour(request, context)

        return call_one

    async def call(request: Any, context: Any) -> Any:
        for check in checks:
            pending = check(request, context)
            if pending is not None:
                await pending
        return await behaviour(request, context)

    return call


def wrap_all(path: str, behaviour: Behaviour, wrappers: Sequence[Wrapper]) -> Behaviour:
    """``behaviour`` wrapped by ``wrappers`` (the first outermost), adjacent guards' checks in one layer.

    A wrapper that leaves a method's behaviour as it is (it does not apply) does not separate
    the guards around it.
    """
    pending: list[Check] = []  # innermost first, until they are put in one layer
    for wrap in reversed(wrappers):
        if isinstance(wrap, Guard):
            check = wrap.check_for(path, behaviour)
            if check is not None:
                pending.append(check)
            continue
        if not pending:
            behaviour = wrap(path, behaviour)
            continue
        layer = checked(behaviour, pending[::-1])
        wrapped = wrap(path, layer)
        if wrapped is not layer:
            behaviour, pending = wrapped, []
    return checked(behaviour, pending[::-1]) if pending else behaviour


_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
# A generic handler may answer any path; composed handlers are remembered for this many.
_GENERIC_CACHE_SIZE = 4096


def compose(path: str, handler: grpc.RpcMethodHandler[Any, Any], wrappers: Sequence[Wrapper]) -> Any:
    """The handler with its behaviour wrapped by ``wrappers``, the first one outermost."""
    for kind in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return handler._replace(**{kind: wrap_all(path, behaviour, wrappers)})  # type: ignore[attr-defined]
    return handler


class _ComposedGenericHandler(grpc.ServiceRpcHandler):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """A generic handler whose method handlers come out composed, each composed once."""

    def __init__(self, inner: grpc.GenericRpcHandler[Any, Any], wrappers: Sequence[Wrapper]) -> None:
        self._inner = inner
        self._wrappers = tuple(wrappers)
        # path → (the inner handler, its composition): reused while the inner answers the same object.
        self._composed: collections.OrderedDict[str, tuple[Any, Any]] = collections.OrderedDict()

    def service_name(self) -> str:
        """The inner handler's service name ("" when it serves no single service)."""
        name = getattr(self._inner, "service_name", None)
        return str(name()) if callable(name) else ""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        """The inner handler's method handler for the call, composed."""
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        path: str = handler_call_details.method
        cached = self._composed.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        composed = compose(path, handler, self._wrappers)
        self._composed[path] = (handler, composed)
        if len(self._composed) > _GENERIC_CACHE_SIZE:
            self._composed.popitem(last=False)
        return composed


class ChainedServer(grpc.aio.Server):
    """A ``grpc.aio.Server`` whose registered methods run through ``wrappers`` (first = outermost).

    Everything else is the wrapped server's own. Pass it wherever a server is expected:
    ``add_FooServicer_to_server(servicer, chained)``, health, reflection.
    """

    def __init__(self, server: grpc.aio.Server, wrappers: Sequence[Wrapper]) -> None:
        self.server = server
        self.wrappers = tuple(wrappers)

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]) -> None:
        """Register generic handlers; their method handlers are composed on first use, once per method."""
        self.server.add_generic_rpc_handlers(
            tuple(_ComposedGenericHandler(handler, self.wrappers) for handler in generic_rpc_handlers)
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Register a service's method handlers, each composed now."""
        # grpc-stubs does not know this method yet; grpc.aio.Server has it since grpcio 1.63.
        self.server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service_name,
            {
                name: compose(f"/{service_name}/{name}", handler, self.wrappers)
                for name, handler in method_handlers.items()
            },
        )

    def add_insecure_port(self, address: str) -> int:
        """Listen on ``address`` without TLS."""
        return self.server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        """Listen on ``address`` with TLS."""
        return self.server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        """Start serving."""
        await self.server.start()

    async def stop(self, grace: float | None = None) -> None:
        """Stop, giving running calls ``grace`` seconds."""
        await self.server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Wait until the server has stopped (or ``timeout`` has passed)."""
        return await self.server.wait_for_termination(timeout)


def chained_server(wrappers: Iterable[Wrapper], *, options: Sequence[tuple[str, Any]] = ()) -> ChainedServer:
    """A new grpc.aio server (no interceptors) whose methods run through ``wrappers``."""
    return ChainedServer(grpc.aio.server(options=list(options)), tuple(wrappers))


class WrapperInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """One wrapper as a per-call server interceptor, for servers that use interceptors."""

    def __init__(self, wrapper: Wrapper) -> None:
        self._wrapper = wrapper

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """The next handler with its behaviour wrapped for this call."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return compose(handler_call_details.method, handler, (self._wrapper,))
