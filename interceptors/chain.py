"""Compose the server's per-call behaviours once per method, at registration.

grpc.aio's interceptor chain runs every interceptor on every call: each one awaits the
continuation, re-resolves the method's handler, looks the method up in the registry and
builds fresh closures around its behaviour. All of that depends only on the method, so
here each concern is a :data:`Wrapper` — ``wrapper(path, behaviour) -> behaviour`` — and
:class:`ChainedServer` applies the wrappers to each method's behaviour when a servicer is
added, once. A call then runs only the checks themselves. A wrapper returns the
behaviour unchanged for methods it does not apply to (a public method needs no
authentication), so those pay nothing at all.

:class:`WrapperInterceptor` turns one wrapper into an ordinary per-call interceptor, for
servers built without :class:`ChainedServer` (tests, benchmarks); the rule itself lives
only in the wrapper.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc

Behaviour = Callable[..., Any]
Wrapper = Callable[[str, Behaviour], Behaviour]
"""``wrapper(method_path, behaviour)``: the behaviour to run instead (or the same one)."""

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
# A generic handler may answer any path; composed handlers are remembered for this many.
_GENERIC_CACHE_SIZE = 4096


def compose(path: str, handler: grpc.RpcMethodHandler[Any, Any], wrappers: Sequence[Wrapper]) -> Any:
    """The handler with its behaviour wrapped by ``wrappers``, the first one outermost."""
    for kind in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            for wrap in reversed(wrappers):
                behaviour = wrap(path, behaviour)
            return handler._replace(**{kind: behaviour})  # type: ignore[attr-defined]
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
