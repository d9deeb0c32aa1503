"""The REST edge for real: the conformance gRPC server on port 0, the edge in uvicorn on port 0.

``conformance_port`` starts the gRPC server once per module; ``make_edge`` builds an edge in
front of it (or in front of any address) with the given options and yields an
``httpx.AsyncClient`` whose base URL is the edge; ``client`` is the module's default edge.
The fixtures live on the module's event loop, so a test module that uses them declares
``pytestmark = pytest.mark.asyncio(loop_scope="module")``.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway_rest.app import create_app
from gateway_rest.descriptors import Catalog
from gateway_rest.transcoder import EdgeOptions
from gateway_rest.upstreams import Upstream, Upstreams
from tests.support import conformance_server
from tests.support.edge import serve_app

DESCRIPTOR_SET = pathlib.Path(__file__).resolve().parents[1] / "gen" / "testing.binpb"
SERVICE = "conformance.v1.ConformanceService"

EdgeFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]

# What must never reach a client: tracebacks, source paths, Python exception and type names.
PYTHON_TEXT = re.compile(
    r"Traceback|File \"|\.py\b|\w+Error\b|\w\(\)|NoneType|bytes-like|object is not|has no len|<class |0x[0-9a-f]{6,}"
)

_catalog: Catalog | None = None


def conformance_catalog() -> Catalog:
    """The conformance catalogue, read once per session (it is immutable)."""
    global _catalog
    if _catalog is None:
        _catalog = Catalog.from_file(DESCRIPTOR_SET)
    return _catalog


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def conformance_port() -> AsyncIterator[int]:
    server, port = await conformance_server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture(scope="module")
def make_edge(conformance_port: int) -> EdgeFactory:
    @contextlib.asynccontextmanager
    async def factory(
        *,
        options: EdgeOptions | None = None,
        cors_origins: Sequence[str] = (),
        address: str | None = None,
        timeout: float = 10.0,
        **client_options: Any,
    ) -> AsyncIterator[httpx.AsyncClient]:
        upstream = Upstream(
            name="conformance",
            title="Conformance",
            address=address or f"127.0.0.1:{conformance_port}",
            services=(SERVICE,),
        )
        app = create_app(Upstreams([upstream]), conformance_catalog(), options=options, cors_origins=cors_origins)
        async with (
            serve_app(app) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout, **client_options) as client,
        ):
            yield client

    return factory


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(make_edge: EdgeFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_edge() as edge:
        yield edge


def assert_status(response: httpx.Response, http: int, code: int) -> dict[str, Any]:
    """The response is a ``google.rpc.Status`` JSON error with these codes; returns the body."""
    assert response.status_code == http, response.text
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], list)
    assert not PYTHON_TEXT.search(response.text), response.text
    return dict(body)


def field_violations(body: dict[str, Any]) -> list[str]:
    """The fields named by the ``google.rpc.BadRequest`` details of an error body."""
    return [
        violation["field"]
        for detail in body["details"]
        if detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for violation in detail["fieldViolations"]
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strict_client(make_edge: EdgeFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An edge with ``EdgeOptions(strict=True)``."""
    async with make_edge(options=EdgeOptions(strict=True)) as edge:
        yield edge


LIMIT = 100


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def limited_client(make_edge: EdgeFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An edge taking request bodies of at most ``LIMIT`` bytes."""
    async with make_edge(options=EdgeOptions(max_body_bytes=LIMIT)) as edge:
        yield edge
