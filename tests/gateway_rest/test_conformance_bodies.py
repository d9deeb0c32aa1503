"""REST edge conformance: request bodies (``body: "*"``, a message field, a repeated field, HttpBody)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.gateway_rest.conftest import LIMIT, assert_status, field_violations

pytestmark = pytest.mark.asyncio(loop_scope="module")

ABSENT = object()


async def test_whole_body_kitchen_sink(client: httpx.AsyncClient):
    sent = {
        "name": "n",
        "display_name": "proto name",
        "count": 7,
        "big": 9007199254740993,
        "ubig": "18446744073709551615",
        "ratio": "NaN",
        "fraction": 0.5,
        "active": True,
        "color": 2,
        "blob": "AP8",
        "tags": ["a", "b"],
        "numbers": ["1", 2],
        "colors": ["COLOR_RED", 2],
        "labels": {"k": "v"},
        "nested": {"id": "x", "inner": {"note": "deep"}},
        "createTime": "2024-01-02T03:04:05.5+02:00",
        "ttl": "-1.25s",
        "mask": "displayName,nested.inner",
        "nickname": None,
        "limit": "12",
        "flag": False,
        "score": 0.5,
        "attributes": {"a": [1, "x", None, True, {"b": 2}]},
        "anything": None,
        "maybe": "",
        "number": 5,
        "signed": -3,
        "fixed": 18446744073709551615,
        "small": 1,
        "children": [{"id": "c1"}, {"id": "c2", "level": 2}],
        "customJson": "cj",
    }
    response = await client.post("/v1/echo:body", json=sent)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "n",
        "displayName": "proto name",
        "count": 7,
        "big": "9007199254740993",
        "ubig": "18446744073709551615",
        "ratio": "NaN",
        "fraction": 0.5,
        "active": True,
        "color": "COLOR_GREEN",
        "blob": "AP8=",
        "tags": ["a", "b"],
        "numbers": ["1", "2"],
        "colors": ["COLOR_RED", "COLOR_GREEN"],
        "labels": {"k": "v"},
        "nested": {"id": "x", "level": 0, "inner": {"note": "deep"}},
        "createTime": "2024-01-02T01:04:05.500Z",
        "ttl": "-1.250s",
        "mask": "displayName,nested.inner",
        "limit": "12",
        "flag": False,
        "score": 0.5,
        "attributes": {"a": [1, "x", None, True, {"b": 2}]},
        "anything": None,
        "maybe": "",
        "number": 5,
        "signed": -3,
        "fixed": "18446744073709551615",
        "small": 1,
        "children": [{"id": "c1", "level": 0}, {"id": "c2", "level": 2}],
        "customJson": "cj",
    }


@pytest.mark.parametrize(
    ("sent", "key", "expected"),
    [
        ({"big": 9007199254740993}, "big", "9007199254740993"),  # int64 as a JSON number
        ({"big": "-9007199254740993"}, "big", "-9007199254740993"),  # … and as a string
        ({"count": "5"}, "count", 5),
        ({"color": "COLOR_RED"}, "color", "COLOR_RED"),
        ({"color": 1}, "color", "COLOR_RED"),
        ({"blob": "-_8"}, "blob", "+/8="),  # URL-safe, unpadded
        ({"blob": "AP8="}, "blob", "AP8="),
        ({"ttl": "3s"}, "ttl", "3s"),
        ({"createTime": "1970-01-01T00:00:00Z"}, "createTime", "1970-01-01T00:00:00Z"),
        ({"anything": [1, "a"]}, "anything", [1, "a"]),
        ({"anything": "s"}, "anything", "s"),
        ({"anything": {"k": True}}, "anything", {"k": True}),
        ({"nickname": None}, "nickname", ABSENT),  # a wrapper's null is unset
        ({"nickname": ""}, "nickname", ""),
        ({"limit": 12}, "limit", "12"),
        ({"flag": True}, "flag", True),
        ({"score": "Infinity"}, "score", "Infinity"),
        ({"text": ""}, "text", ""),
        ({"text": "t"}, "number", ABSENT),
        ({"json_named": "pn"}, "customJson", "pn"),
        ({"display_name": "p"}, "displayName", "p"),
        ({"nested": None}, "nested", ABSENT),
    ],
)
async def test_whole_body_json_mapping(client: httpx.AsyncClient, sent, key, expected):
    response = await client.post("/v1/echo:body", json=sent)
    assert response.status_code == 200, response.text
    assert response.json().get(key, ABSENT) == expected


async def test_body_field_plus_query(client: httpx.AsyncClient):
    response = await client.post("/v1/shelves/s1/items?itemId=i9", json={"displayName": "d", "count": 2})
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("name", "displayName", "count")} == {
        "name": "shelves/s1/items/i9",
        "displayName": "d",
        "count": 2,
    }


async def test_repeated_body_field_is_a_bare_array(client: httpx.AsyncClient):
    response = await client.post("/v1/echo/n1:tags", json=["a", "b", ""])
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["a", "b", ""]
    assert response.json()["name"] == "n1"


async def test_patch_with_update_mask_in_the_query(client: httpx.AsyncClient):
    response = await client.patch(
        "/v1/shelves/s1/items/i1?updateMask=displayName,count", json={"displayName": "d", "count": 4}
    )
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("name", "displayName", "count", "mask")} == {
        "name": "shelves/s1/items/i1",
        "displayName": "d",
        "count": 4,
        "mask": "displayName,count",
    }


async def test_patch_update_mask_in_snake_case(client: httpx.AsyncClient):
    response = await client.patch("/v1/shelves/s1/items/i1?update_mask=display_name", json={"displayName": "d"})
    assert response.status_code == 200, response.text
    assert response.json()["mask"] == "displayName"


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/json"}])
async def test_empty_body_is_an_empty_message(client: httpx.AsyncClient, headers):
    response = await client.post("/v1/echo:body", content=b"", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == ""
    assert response.json()["count"] == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json", "APPLICATION/JSON"]
)
async def test_json_media_types_are_accepted(client: httpx.AsyncClient, content_type):
    response = await client.post("/v1/echo:body", content=b'{"name":"j"}', headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "j"


@pytest.mark.parametrize("content", [b"{bad", b'{"name": "x"', b"\xff\xfe", b"nul", b'{"name": "x"} trailing'])
async def test_malformed_json_is_400(client: httpx.AsyncClient, content):
    body = assert_status(
        await client.post("/v1/echo:body", content=content, headers={"content-type": "application/json"}), 400, 3
    )
    assert "JSON" in body["message"]


@pytest.mark.parametrize(
    ("path", "sent", "field"),
    [
        ("/v1/echo:body", [1, 2], None),  # an array for an object
        ("/v1/echo:body", "text", None),
        ("/v1/echo:body", 5, None),
        ("/v1/echo:body", {"count": "abc"}, "count"),  # a string for an int
        ("/v1/echo:body", {"count": [1]}, "count"),
        ("/v1/echo:body", {"count": 1.5}, "count"),
        ("/v1/echo:body", {"count": 2147483648}, "count"),
        ("/v1/echo:body", {"big": "x"}, "big"),
        ("/v1/echo:body", {"active": "yes"}, "active"),
        ("/v1/echo:body", {"blob": 5}, "blob"),
        ("/v1/echo:body", {"nested": 5}, "nested"),
        ("/v1/echo:body", {"nested": {"level": "x"}}, "nested.level"),
        ("/v1/echo:body", {"tags": "x"}, "tags"),
        ("/v1/echo:body", {"tags": [1]}, "tags"),
        ("/v1/echo:body", {"labels": [1]}, "labels"),
        ("/v1/echo:body", {"createTime": "yesterday"}, "createTime"),
        ("/v1/echo:body", {"nickname": 5}, "nickname"),
        ("/v1/echo:body", {"numbers": [None]}, "numbers"),
        ("/v1/shelves/s1/items", [1], None),  # body: "item" must be an object
        ("/v1/shelves/s1/items", "x", None),
        ("/v1/shelves/s1/items", {"count": "x"}, "item.count"),
        ("/v1/echo/n1:tags", {"a": 1}, "tags"),  # body: "tags" must be an array
        ("/v1/echo/n1:tags", "a", "tags"),
    ],
)
async def test_json_of_the_wrong_shape_is_400(client: httpx.AsyncClient, path, sent, field):
    body = assert_status(await client.post(path, json=sent), 400, 3)
    if field is not None:
        assert field_violations(body) == [field]


async def test_two_members_of_a_oneof_in_the_body_is_400(client: httpx.AsyncClient):
    assert_status(await client.post("/v1/echo:body", json={"text": "t", "number": 1}), 400, 3)


async def test_unknown_json_fields_are_ignored_by_default(client: httpx.AsyncClient):
    response = await client.post("/v1/echo:body", json={"bogus": 1, "nested": {"nope": 2}, "name": "kept"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "kept"
    assert response.json()["nested"] == {"id": "", "level": 0}


async def test_unknown_enum_name_in_the_body_is_dropped_by_default(client: httpx.AsyncClient):
    # What grpc-gateway and protobuf's ignore-unknown mode do; strict mode rejects it (below).
    response = await client.post("/v1/echo:body", json={"color": "COLOR_BLUE", "name": "n"})
    assert response.status_code == 200, response.text
    assert response.json()["color"] == "COLOR_UNSPECIFIED"


async def test_whole_body_ignores_the_query_by_default(client: httpx.AsyncClient):
    response = await client.post("/v1/echo:body?count=4&name=q", json={"name": "n"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "n"
    assert response.json()["count"] == 0


@pytest.mark.parametrize(
    ("method", "path", "sent", "field"),
    [
        ("POST", "/v1/echo:body", {"bogus": 1}, "bogus"),
        ("POST", "/v1/echo:body", {"nested": {"inner": {"nope": 1}}}, "nested.inner.nope"),
        ("POST", "/v1/shelves/s1/items", {"bogus": 1}, "item.bogus"),
        ("POST", "/v1/echo:body", {"color": "COLOR_BLUE"}, "color"),
        ("POST", "/v1/echo:body?count=4", {}, None),  # body "*": no query parameters
    ],
)
async def test_strict_mode_rejects_unknown_json(strict_client: httpx.AsyncClient, method, path, sent, field):
    body = assert_status(await strict_client.request(method, path, json=sent), 400, 3)
    if field is not None:
        assert field_violations(body) == [field]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
async def test_non_json_content_type_is_415(client: httpx.AsyncClient, content_type):
    response = await client.post("/v1/echo:body", content=b'{"name":"x"}', headers={"content-type": content_type})
    body = assert_status(response, 415, 3)
    assert "application/json" in body["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/echo/x"),
        ("GET", "/v1/shelves/s1/items/i1"),
        ("DELETE", "/v1/shelves/s1/items/i1"),
        ("SEARCH", "/v1/shelves/s1/items/i1"),
    ],
)
async def test_body_on_a_route_without_body_is_400(client: httpx.AsyncClient, method, path):
    response = await client.request(method, path, content=b'{"name":"x"}', headers={"content-type": "application/json"})
    body = assert_status(response, 400, 3)
    assert "takes no request body" in body["message"]


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("path", "chunked"),
    [("/v1/echo:body", False), ("/v1/echo:body", True), ("/v1/uploads/u1", False), ("/v1/uploads/u1", True)],
)
async def test_body_over_the_limit_is_413(limited_client: httpx.AsyncClient, path, chunked):
    payload = json.dumps({"name": "x" * LIMIT}).encode()
    if chunked:
        response = await limited_client.post(path, content=_chunks(payload[:50], payload[50:]))
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
    else:
        response = await limited_client.post(path, content=payload)
    body = assert_status(response, 413, 8)
    assert f"{LIMIT} bytes" in body["message"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_at_the_limit_is_accepted(limited_client: httpx.AsyncClient, chunked):
    payload = json.dumps({"name": "x" * (LIMIT - 12)}).encode()
    assert len(payload) == LIMIT
    response = await limited_client.post("/v1/echo:body", content=_chunks(payload) if chunked else payload)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "x" * (LIMIT - 12)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (bytes(range(256)) * 4, "image/png"),
        (b"a,b\n1,2\n", "text/csv; charset=utf-8"),
        (b"", "application/octet-stream"),
        (b'{"not": "parsed"}', "application/json"),  # HttpBody takes even JSON verbatim
    ],
)
async def test_http_body_upload_arrives_intact(client: httpx.AsyncClient, content, content_type):
    response = await client.post("/v1/uploads/u1", content=content, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "u1",
        "contentType": content_type,
        "size": str(len(content)),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


async def test_http_body_upload_without_content_type_is_octet_stream(client: httpx.AsyncClient):
    response = await client.post("/v1/uploads/u1", content=b"\x00\x01")
    assert response.status_code == 200, response.text
    assert response.json()["contentType"] == "application/octet-stream"
    assert response.json()["sha256"] == hashlib.sha256(b"\x00\x01").hexdigest()


async def test_path_beats_body_on_a_conflict(client: httpx.AsyncClient):
    cancel = await client.post("/v1/shelves/s1/items/i1:cancel", json={"name": "shelves/zz/items/zz"})
    put = await client.put("/v1/shelves/s1/items/i1", json={"item": {"name": "shelves/x/items/y", "count": 1}})
    patch = await client.patch("/v1/shelves/s1/items/i1", json={"name": "shelves/x/items/y"})
    assert cancel.json()["name"] == "shelves/s1/items/i1"
    assert put.json()["name"] == "shelves/s1/items/i1"
    assert put.json()["count"] == 1
    assert patch.json()["name"] == "shelves/s1/items/i1"
