"""A bytes-in, bytes-out gRPC server on port 0 whose handlers a test writes, for the resilience tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from interceptors.chain import Wrapper, chained_server

SERVICE = "test.Echo"
Handler = Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]


class ManualClock:
    """A ``time.monotonic`` stand-in a test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def echo_server(handlers: dict[str, Handler], wrappers: Sequence[Wrapper] = ()) -> AsyncIterator[int]:
    """Serve ``/test.Echo/<name>`` for each handler (through ``wrappers``) and yield the port; stops after."""
    server = chained_server(wrappers)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {name: grpc.unary_unary_rpc_method_handler(h) for name, h in handlers.items()}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def channel_to(
    port: int, interceptors: Sequence[Any] = (), options: Sequence[tuple[str, Any]] = ()
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to 127.0.0.1:``port``, closed afterwards."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=list(options), interceptors=list(interceptors))
    try:
        yield channel
    finally:
        await channel.close(None)


def method(channel: grpc.aio.Channel, name: str) -> Any:
    """The callable for ``/test.Echo/<name>`` (bytes request and response)."""
    return channel.unary_unary(f"/{SERVICE}/{name}", None, None)
