"""A probe server for the protection wrappers: the real chain with a stand-in authenticator.

The caller names its principal in ``x-test-principal`` metadata (``users/a@org1``,
``services/agents``); public methods get no principal, only the client address, exactly as
the real authentication wrapper settles it. Handlers are plain: unary ones answer at once,
``Hold*`` ones (unary or streaming) wait until the test releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from interceptors.auth import authenticated
from interceptors.chain import Wrapper, chained_server
from interceptors.errors import with_errors
from mesh.errors import Unauthenticated
from mesh.principal import Principal, PrincipalKind
from mesh.registry import Registry
from tests.support.grpc_helpers import serving

PRINCIPAL_KEY = "x-test-principal"


class NamedPrincipals:
    """Authenticates ``x-test-principal: <subject>@<organisation>`` (services: ``services/<name>``)."""

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]], client_address: str = "") -> Principal:
        """The principal the metadata names."""
        for key, value in metadata:
            if key == PRINCIPAL_KEY and isinstance(value, str):
                if value.startswith("services/"):
                    return Principal(value, PrincipalKind.SERVICE, "", "SERVICE", frozenset({"*"}))
                subject, _, organization = value.partition("@")
                return Principal(subject, PrincipalKind.USER, organization, "ADMIN", frozenset({"*"}))
        raise Unauthenticated("invalid or missing credentials")


class Holds:
    """Releases held handlers; counts how many are waiting."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0
        self._changed = asyncio.Event()

    def count(self, step: int) -> None:
        self.waiting += step
        self._changed.set()

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Return once ``done()`` holds, checked whenever a held handler starts or ends."""
        while not done():
            self._changed.clear()
            await self._changed.wait()

    async def wait_until_waiting(self, count: int) -> None:
        """Return once ``count`` handlers are waiting (bounded by the test's timeout)."""
        await self.wait_until(lambda: self.waiting >= count)


@contextlib.asynccontextmanager
async def protected_probe(
    registry: Registry, service: str, before_auth: Sequence[Wrapper], after_auth: Sequence[Wrapper]
) -> AsyncIterator[tuple[Any, Holds]]:
    """Serve every method of ``service`` through errors → ``before_auth`` → auth → ``after_auth``."""
    holds = Holds()
    methods = registry.service(service).methods

    async def answer(request: bytes, context: Any) -> bytes:
        return b""

    async def hold(request: bytes, context: Any) -> bytes:
        holds.count(1)
        try:
            await holds.release.wait()
        finally:
            holds.count(-1)
        return b""

    async def hold_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        holds.count(1)
        try:
            yield b""
            await holds.release.wait()
        finally:
            holds.count(-1)

    async def answer_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b""

    handlers: dict[str, Any] = {}
    behaviour: Any
    for method in methods:
        if method.server_streaming:
            behaviour = hold_stream if method.name.startswith("Hold") else answer_stream
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(behaviour)
        else:
            behaviour = hold if method.name.startswith("Hold") else answer
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(behaviour)
    server = chained_server([with_errors, *before_auth, authenticated(registry, NamedPrincipals()), *after_auth])
    full_name = methods[0].path.split("/")[1]
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(full_name, handlers),))
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)
    try:
        async with serving(server) as channel:
            yield channel, holds
    finally:
        holds.release.set()


def details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The google.rpc details of a failed call, by type name, and the pushback trailer."""
    found: dict[str, Any] = {}
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                for kind in (error_details_pb2.RetryInfo, error_details_pb2.QuotaFailure):
                    if detail.Is(kind.DESCRIPTOR):
                        message = kind()
                        detail.Unpack(message)
                        found[kind.DESCRIPTOR.name] = message
        if key == "grpc-retry-pushback-ms":
            found["pushback"] = value
    return found
