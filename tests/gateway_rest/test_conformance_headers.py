"""REST edge conformance: headers ↔ metadata, request ids, CORS, deadlines, and /metrics."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_rest.conftest import EdgeFactory, assert_status

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP_ORIGIN = "https://app.example.com"


async def received_metadata(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    response = await client.get("/v1/headers", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json()["metadata"])


@pytest.mark.parametrize(
    ("header", "value", "key"),
    [
        ("Authorization", "Bearer t0k3n", "authorization"),
        ("X-Request-Id", "req-123", "x-request-id"),
        ("X-Api-Key", "k-1", "x-api-key"),
        ("Idempotency-Key", "idem-1", "idempotency-key"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "traceparent"),
        ("tracestate", "vendor=value", "tracestate"),
        ("Grpc-Metadata-Foo", "bar", "foo"),
        ("Grpc-Metadata-Tenant-Id", "t-9", "tenant-id"),
    ],
)
async def test_allow_listed_headers_are_forwarded(client: httpx.AsyncClient, header, value, key):
    metadata = await received_metadata(client, {header: value})
    assert metadata[key] == value


async def test_binary_metadata_is_base64_decoded(client: httpx.AsyncClient):
    metadata = await received_metadata(client, {"Grpc-Metadata-Blob-Bin": "AAH/"})
    assert metadata["blob-bin"] == "0001ff"  # the service reports binary values in hex


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Cookie", "session=secret"),
        ("X-Internal-Thing", "1"),
        ("Grpc-Metadata-Grpc-Status", "0"),  # reserved names cannot be smuggled in
        ("Proxy-Authorization", "Basic c2VjcmV0"),
        ("Te", "trailers"),
    ],
)
async def test_other_headers_are_not_forwarded(client: httpx.AsyncClient, header, value):
    metadata = await received_metadata(client, {header: value})
    forwarded = {key.lower() for key in metadata}
    assert header.lower() not in forwarded
    assert header.lower().removeprefix("grpc-metadata-") not in forwarded
    assert value not in metadata.values()


async def test_transport_headers_are_not_forwarded(client: httpx.AsyncClient):
    metadata = await received_metadata(client, {"Cookie": "a=b", "Accept-Language": "fr", "User-Agent": "console/2.1"})
    # gRPC's own user agent, the request id, and what the edge itself vouches for about the client
    assert set(metadata) <= {"user-agent", "x-request-id", "x-forwarded-for", "x-user-agent"}
    assert "host" not in metadata
    assert "grpc-python" in metadata["user-agent"]  # gRPC sets its own user-agent upstream
    assert metadata["x-user-agent"] == "console/2.1"  # the client's travels under its own name


async def test_the_edge_sets_x_forwarded_for_to_the_client_it_sees(client: httpx.AsyncClient):
    metadata = await received_metadata(client, {"X-Forwarded-For": "10.0.0.1"})  # a client cannot claim an address
    assert metadata["x-forwarded-for"] == "127.0.0.1"


async def test_response_metadata_and_trailers_come_back(client: httpx.AsyncClient):
    response = await client.get("/v1/headers")
    assert response.headers["grpc-metadata-x-echo-initial"] == "hello"
    assert response.headers["grpc-metadata-x-echo-trailer"] == "bye"
    assert response.headers["grpc-metadata-x-echo-bin"] == "AAE="  # b"\x00\x01", base64
    assert not [name for name in response.headers if name.startswith("grpc-metadata-grpc-")]


async def test_request_id_is_generated_when_absent(client: httpx.AsyncClient):
    response = await client.get("/v1/headers")
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert response.json()["metadata"]["x-request-id"] == generated
    again = await client.get("/v1/headers")
    assert again.headers["x-request-id"] != generated


async def test_request_id_is_echoed_when_present(client: httpx.AsyncClient):
    response = await client.get("/v1/headers", headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["metadata"]["x-request-id"] == "abc-123"


@pytest.mark.parametrize("unfit", ["x" * 129, "has spaces", 'quo"te', "semi;colon"])
async def test_an_unfit_request_id_is_replaced_since_every_service_logs_it(client: httpx.AsyncClient, unfit: str):
    response = await client.get("/v1/headers", headers={"X-Request-Id": unfit})
    made = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert response.json()["metadata"]["x-request-id"] == made


async def test_grpc_metadata_cannot_replace_the_request_id(client: httpx.AsyncClient):
    response = await client.get(
        "/v1/headers", headers={"X-Request-Id": "abc-123", "Grpc-Metadata-X-Request-Id": "evil"}
    )
    assert response.json()["metadata"]["x-request-id"] == "abc-123"
    alone = await client.get("/v1/headers", headers={"Grpc-Metadata-X-Request-Id": "evil"})
    assert alone.json()["metadata"]["x-request-id"] == alone.headers["x-request-id"] != "evil"


@pytest.mark.parametrize(("path", "http"), [("/v1/nope", 404), ("/v1/echo:body", 405)])
async def test_request_id_is_on_edge_errors_too(client: httpx.AsyncClient, path, http):
    response = await client.get(path, headers={"X-Request-Id": "err-1"})
    assert response.status_code == http
    assert response.headers["x-request-id"] == "err-1"


async def test_cors(make_edge: EdgeFactory):
    async with make_edge(cors_origins=[APP_ORIGIN]) as edge:
        allowed = await edge.options(
            "/v1/shelves/s1/items/i1",
            headers={
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        custom = await edge.options(
            "/v1/shelves/s1/items/i1", headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "SEARCH"}
        )
        denied = await edge.options(
            "/v1/shelves/s1/items/i1",
            headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "PATCH"},
        )
        simple = await edge.get("/v1/shelves/s1/items/i1", headers={"Origin": APP_ORIGIN})
        foreign = await edge.get("/v1/shelves/s1/items/i1", headers={"Origin": "https://evil.example.com"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    methods = {m.strip() for m in allowed.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE", "SEARCH"} <= methods
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert custom.status_code == 200  # the custom HTTP method of Describe may be preflighted too
    assert "access-control-allow-origin" not in denied.headers
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    assert foreign.status_code == 200
    assert "access-control-allow-origin" not in foreign.headers


async def test_no_cors_headers_unless_configured(client: httpx.AsyncClient):
    response = await client.get("/v1/shelves/s1/items/i1", headers={"Origin": APP_ORIGIN})
    assert "access-control-allow-origin" not in response.headers


async def test_grpc_timeout_shorter_than_the_call_is_504(client: httpx.AsyncClient):
    response = await client.get("/v1/sleep?milliseconds=1000", headers={"Grpc-Timeout": "50m"})
    assert_status(response, 504, 4)


@pytest.mark.parametrize("timeout", ["5S", "2000m", "1M", "99999999u"])
async def test_grpc_timeout_longer_than_the_call_is_fine(client: httpx.AsyncClient, timeout):
    response = await client.get("/v1/sleep?milliseconds=1", headers={"Grpc-Timeout": timeout})
    assert response.status_code == 200, response.text
    assert response.json() == {}


@pytest.mark.parametrize("timeout", ["abc", "10", "5x", "-5m", "1.5S", "123456789S", "100000000n", "m"])
async def test_malformed_grpc_timeout_is_400(client: httpx.AsyncClient, timeout):
    body = assert_status(await client.get("/v1/sleep?milliseconds=1", headers={"Grpc-Timeout": timeout}), 400, 3)
    assert "Grpc-Timeout" in body["message"]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition, by name and label set (label order is not meaningful)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics(make_edge: EdgeFactory):
    get = "/v1/{name=shelves/*/items/*}"
    item = "/conformance.v1.ConformanceService/GetItem"
    fail = "/conformance.v1.ConformanceService/Fail"

    def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return name, frozenset(labels.items())

    requests, errors = "vocelio_edge_requests_total", "vocelio_edge_errors_total"
    expected = {
        key(requests, method="GET", route=get, grpc_method=item, status="200"): 2.0,
        key(requests, method="GET", route=get, grpc_method=item, status="404"): 1.0,
        key(errors, method="GET", route=get, grpc_method=item, grpc_code="NOT_FOUND"): 1.0,
        key(requests, method="POST", route="/v1/fail", grpc_method=fail, status="409"): 1.0,
        key(errors, method="POST", route="/v1/fail", grpc_method=fail, grpc_code="ABORTED"): 1.0,
        key(requests, method="GET", route="unmatched", grpc_method="", status="404"): 1.0,
        key(requests, method="GET", route=get.replace("v1", "v2"), grpc_method=item, status="200"): 1.0,
        key("vocelio_edge_request_duration_seconds_count", method="GET", route=get, grpc_method=item): 3.0,
        key("vocelio_edge_request_duration_seconds_bucket", method="GET", route=get, grpc_method=item, le="+Inf"): 3.0,
    }
    async with make_edge() as edge:
        assert (await edge.get("/v1/shelves/s1/items/i1")).status_code == 200
        assert (await edge.get("/v2/shelves/s1/items/i1")).status_code == 200  # its own route label
        assert (await edge.get("/v1/shelves/s1/items/i2")).status_code == 200
        assert (await edge.get("/v1/shelves/s1/items/missing")).status_code == 404
        assert (await edge.post("/v1/fail", json={"code": 10, "message": "abort"})).status_code == 409
        assert (await edge.get("/v1/no/such/route")).status_code == 404
        for _ in range(100):  # the counters move right after the last byte is sent: allow a tick
            metrics = await edge.get("/metrics")
            found = samples(metrics.text)
            if all(found.get(key) == value for key, value in expected.items()):
                break
            await asyncio.sleep(0.01)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'vocelio_edge_requests_total{grpc_method="/conformance.v1.ConformanceService/GetItem",method="GET",'
        'route="/v1/{name=shelves/*/items/*}",status="200"} 2.0'
    ) in metrics.text
    assert {key: found.get(key) for key in expected} == expected
    buckets = [
        key for key in found if key[0] == "vocelio_edge_request_duration_seconds_bucket" and ("route", get) in key[1]
    ]
    assert len(buckets) > 5  # a real latency histogram
    assert "shelves/s1/items/i1" not in metrics.text  # labels are templates, never concrete paths
