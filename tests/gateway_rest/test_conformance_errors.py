"""REST edge conformance: gRPC status → HTTP status, and every error as ``google.rpc.Status`` JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from gateway_rest.transcoder import EdgeOptions
from tests.gateway_rest.conftest import LIMIT, PYTHON_TEXT, EdgeFactory, assert_status

pytestmark = pytest.mark.asyncio(loop_scope="module")

# google/rpc/code.proto's HTTP mapping.
CANONICAL = [
    (1, 499),  # CANCELLED
    (2, 500),  # UNKNOWN
    (3, 400),  # INVALID_ARGUMENT
    (4, 504),  # DEADLINE_EXCEEDED
    (5, 404),  # NOT_FOUND
    (6, 409),  # ALREADY_EXISTS
    (7, 403),  # PERMISSION_DENIED
    (8, 429),  # RESOURCE_EXHAUSTED
    (9, 400),  # FAILED_PRECONDITION
    (10, 409),  # ABORTED
    (11, 400),  # OUT_OF_RANGE
    (12, 501),  # UNIMPLEMENTED
    (13, 500),  # INTERNAL
    (14, 503),  # UNAVAILABLE
    (15, 500),  # DATA_LOSS
    (16, 401),  # UNAUTHENTICATED
]


@pytest.mark.parametrize(("code", "http"), CANONICAL)
async def test_grpc_code_maps_to_http_status(client: httpx.AsyncClient, code, http):
    response = await client.post("/v1/fail", json={"code": code, "message": f"failure {code}"})
    body = assert_status(response, http, code)
    if code != 14:  # UNAVAILABLE's message is replaced by the edge's own
        assert body["message"] == f"failure {code}"
    assert body["details"] == []
    assert response.headers["grpc-metadata-x-failure"] == "yes"  # error trailers still come back


async def test_ok_is_200(client: httpx.AsyncClient):
    response = await client.get("/v1/shelves/s1/items/i1")
    assert response.status_code == 200
    assert "code" not in response.json()


async def test_an_rpc_that_never_completes_is_never_a_200(client: httpx.AsyncClient):
    # The test service "fails" with OK by aborting with StatusCode.OK, which grpcio never completes:
    # the call hangs. The edge's deadline (here the client's Grpc-Timeout) turns that into a 504.
    response = await client.post("/v1/fail", json={"code": 0, "message": "ok?"}, headers={"grpc-timeout": "200m"})
    assert_status(response, 504, 4)


async def test_codes_outside_the_canonical_set_are_unknown(client: httpx.AsyncClient):
    assert_status(await client.post("/v1/fail", json={"code": 42, "message": "odd"}), 500, 2)


async def test_rich_details_round_trip(client: httpx.AsyncClient):
    response = await client.post("/v1/fail", json={"code": 9, "message": "precondition", "withDetails": True})
    body = assert_status(response, 400, 9)
    assert body == {
        "code": 9,
        "message": "precondition",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "name", "description": "too short"}],
            },
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "TESTING",
                "domain": "conformance.test",
                "metadata": {"k": "v"},
            },
        ],
    }


async def test_unavailable_carries_retry_after(client: httpx.AsyncClient):
    response = await client.post("/v1/fail", json={"code": 14, "message": "down at 10.1.2.3:50051"})
    assert_status(response, 503, 14)
    assert response.headers["retry-after"] == "1"
    assert "10.1.2.3" not in response.text


@pytest.mark.parametrize(
    ("code", "http", "millis", "seconds"), [(8, 429, 1500, "2"), (14, 503, 3000, "3"), (8, 429, 10, "1")]
)
async def test_retry_info_becomes_retry_after_rounded_up(client: httpx.AsyncClient, code, http, millis, seconds):
    response = await client.post("/v1/fail", json={"code": code, "message": "slow down", "retryAfterMs": millis})
    body = assert_status(response, http, code)
    assert response.headers["retry-after"] == seconds
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.RetryInfo"


async def test_retry_after_follows_the_options(make_edge: EdgeFactory):
    async with make_edge(options=EdgeOptions(retry_after=7)) as edge:
        response = await edge.post("/v1/fail", json={"code": 14, "message": "down"})
    assert response.headers["retry-after"] == "7"


async def test_unauthenticated_carries_www_authenticate(client: httpx.AsyncClient):
    response = await client.post("/v1/fail", json={"code": 16, "message": "who are you"})
    assert_status(response, 401, 16)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound but not listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/shelves/s1/items/i1"), ("GET", "/v1/shelves/s1/items:stream?count=2"), ("POST", "/v1/fail")],
)
async def test_upstream_down_is_503_without_its_address(make_edge: EdgeFactory, dead_port, method, path):
    async with make_edge(address=f"127.0.0.1:{dead_port}", timeout=30.0) as edge:
        response = await edge.request(method, path, json={} if method == "POST" else None)
    body = assert_status(response, 503, 14)
    assert body["message"] == "conformance.v1.ConformanceService is temporarily unavailable; retry later"
    assert response.headers["retry-after"] == "1"
    assert str(dead_port) not in response.text
    assert "127.0.0.1" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "http", "code"),
    [
        ("GET", "/v1/nope", {}, 404, 5),
        ("PUT", "/v1/echo:body", {}, 405, 12),
        ("POST", "/v1/echo:body", {"content": b"x" * (LIMIT + 1)}, 413, 8),
        ("POST", "/v1/echo:body", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, 3),
        ("POST", "/v1/echo:body", {"content": b"{oops", "headers": {"content-type": "application/json"}}, 400, 3),
        ("POST", "/v1/echo:body", {"json": {"count": "abc"}}, 400, 3),
        ("POST", "/v1/echo:body", {"json": {"count": [1]}}, 400, 3),
        ("POST", "/v1/echo:body", {"json": {"nested": 5}}, 400, 3),
        ("POST", "/v1/echo:body", {"json": {"name": 5}}, 400, 3),
        ("POST", "/v1/echo:body", {"json": {"color": [1]}}, 400, 3),
        ("POST", "/v1/echo:body", {"json": {"blob": 1}}, 400, 3),
        ("GET", "/v1/echo/x?count=abc", {}, 400, 3),
        ("GET", "/v1/echo/x", {"headers": {"grpc-timeout": "soon"}}, 400, 3),
        ("GET", "/v1/shelves/s1/items/missing", {}, 404, 5),
        ("POST", "/v1/collect", {"json": {}}, 501, 12),
    ],
)
async def test_every_error_has_the_status_shape_and_no_python_text(
    limited_client: httpx.AsyncClient, method, path, kwargs, http, code
):
    response = await limited_client.request(method, path, **kwargs)
    assert_status(response, http, code)
    assert not PYTHON_TEXT.search(response.text)
