"""REST edge conformance: ProtoJSON responses, ``response_body``, HttpBody, and server streams."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.gateway_rest.conftest import assert_status

pytestmark = pytest.mark.asyncio(loop_scope="module")

STREAM = "/v1/shelves/s1/items:stream"
SSE = {"accept": "text/event-stream"}


def item(index: int) -> dict[str, object]:
    """One StreamItems message as ProtoJSON, every field without presence printed."""
    return {
        "name": f"shelves/s1/items/{index}",
        "displayName": "",
        "count": index,
        "big": "0",
        "ubig": "0",
        "ratio": 0.0,
        "fraction": 0.0,
        "active": False,
        "color": "COLOR_UNSPECIFIED",
        "blob": "",
        "tags": [],
        "numbers": [],
        "colors": [],
        "labels": {},
        "signed": 0,
        "fixed": "0",
        "small": 0,
        "children": [],
        "customJson": "",
    }


async def test_protojson_output(client: httpx.AsyncClient):
    response = await client.get("/v1/shelves/s1/items/i1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        **item(0),
        "name": "shelves/s1/items/i1",
        "displayName": "An item",
        "count": 3,
        "big": "9007199254740993",  # int64 beyond 2^53 as a string, exactly
    }
    # unset message fields (and unset fields with presence) are omitted, not null
    for omitted in ("nested", "createTime", "ttl", "mask", "nickname", "attributes", "anything", "maybe", "text"):
        assert omitted not in response.json()
    assert not [key for key in response.json() if "_" in key]  # lowerCamelCase only


async def test_protojson_output_of_well_known_types(client: httpx.AsyncClient):
    response = await client.post(
        "/v1/echo:body",
        json={
            "blob": "AAEC/w==",
            "createTime": "2024-02-29T23:59:59.123456789Z",
            "ttl": "0.000001s",
            "mask": "createTime,nested.inner.note",
            "colors": [0, 1],
            "labels": {"b": "2", "a": "1"},
        },
    )
    assert {k: response.json()[k] for k in ("blob", "createTime", "ttl", "mask", "colors", "labels")} == {
        "blob": "AAEC/w==",
        "createTime": "2024-02-29T23:59:59.123456789Z",
        "ttl": "0.000001s",
        "mask": "createTime,nested.inner.note",
        "colors": ["COLOR_UNSPECIFIED", "COLOR_RED"],
        "labels": {"a": "1", "b": "2"},
    }


async def test_response_body_message_field(client: httpx.AsyncClient):
    response = await client.get("/v1/shelves/s1/items/i1:nested")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"id": "n1", "level": 2, "inner": {"note": "deep"}}


async def test_response_body_repeated_scalar_is_a_bare_array(client: httpx.AsyncClient):
    response = await client.get("/v1/shelves/s1/items/i1:tags")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'["a","b"]'


async def test_empty_is_an_empty_object(client: httpx.AsyncClient):
    deleted = await client.delete("/v1/shelves/s1/items/i1")
    slept = await client.get("/v1/sleep?milliseconds=1")
    for response in (deleted, slept):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == b"{}"


async def test_http_body_download_is_raw(client: httpx.AsyncClient):
    response = await client.get("/v1/downloads/report")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv"  # exactly the service's, no charset added
    assert response.content == b"name\nreport\n"


@pytest.mark.parametrize("count", [1, 3, 20])
async def test_ndjson_stream(client: httpx.AsyncClient, count):
    response = await client.get(f"{STREAM}?count={count}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.content.endswith(b"\n")
    lines = [json.loads(line) for line in response.content.splitlines()]
    assert lines == [{"result": item(index)} for index in range(count)]


async def test_ndjson_stream_arrives_line_by_line(client: httpx.AsyncClient):
    async with client.stream("GET", f"{STREAM}?count=4") as response:
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    assert [line["result"]["count"] for line in lines] == [0, 1, 2, 3]


def sse_events(text: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


async def test_sse_stream(client: httpx.AsyncClient):
    response = await client.get(f"{STREAM}?count=3", headers=SSE)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/event-stream"
    assert response.headers["cache-control"] == "no-store"
    assert response.text.endswith("\n\n")
    assert sse_events(response.text) == [("message", item(index)) for index in range(3)]


@pytest.mark.parametrize(("fail_code", "http"), [(5, 404), (7, 403), (14, 503), (3, 400)])
@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_stream_error_before_the_first_message_is_a_plain_error(
    client: httpx.AsyncClient, fail_code, http, accept
):
    response = await client.get(f"{STREAM}?count=3&failAfter=0&failCode={fail_code}", headers={"accept": accept})
    body = assert_status(response, http, fail_code)
    if fail_code != 14:  # UNAVAILABLE's message is replaced by the edge's own
        assert body["message"] == "stream failed on purpose"


@pytest.mark.parametrize(("count", "fail_after"), [(3, 2), (2, 2), (5, 1)])
async def test_ndjson_error_after_some_messages_is_a_final_error_line(client: httpx.AsyncClient, count, fail_after):
    response = await client.get(f"{STREAM}?count={count}&failAfter={fail_after}&failCode=5")
    assert response.status_code == 200  # the head was already sent
    lines = [json.loads(line) for line in response.content.splitlines()]
    assert lines[:-1] == [{"result": item(index)} for index in range(fail_after)]
    assert lines[-1] == {"error": {"code": 5, "message": "stream failed on purpose", "details": []}}


async def test_sse_error_after_some_messages_is_an_error_event(client: httpx.AsyncClient):
    response = await client.get(f"{STREAM}?count=3&failAfter=2&failCode=10", headers=SSE)
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[:-1] == [("message", item(0)), ("message", item(1))]
    assert events[-1] == ("error", {"code": 10, "message": "stream failed on purpose", "details": []})


@pytest.mark.parametrize("headers", [{}, SSE])
async def test_empty_stream_is_200_with_an_empty_body(client: httpx.AsyncClient, headers):
    response = await client.get(f"{STREAM}?count=0", headers=headers)
    assert response.status_code == 200
    assert response.content == b""


async def test_raw_http_body_stream_concatenates_chunks(client: httpx.AsyncClient):
    response = await client.get("/v1/shelves/s1/chunks:stream?count=3")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.content == b"chunk 0\nchunk 1\nchunk 2\n"
