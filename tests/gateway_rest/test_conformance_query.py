"""REST edge conformance: query parameters → request fields (EchoQuery returns what it got)."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway_rest.conftest import assert_status, field_violations

pytestmark = pytest.mark.asyncio(loop_scope="module")

ECHO = "/v1/echo/q"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # strings, proto names and JSON names (json_name too)
        ("displayName=hello", {"displayName": "hello"}),
        ("display_name=proto", {"displayName": "proto"}),
        ("customJson=cj", {"customJson": "cj"}),
        ("json_named=pn", {"customJson": "pn"}),
        # integers of every width, 64-bit ones beyond 2^53, printed back as strings
        ("count=-5", {"count": -5}),
        ("count=2147483647", {"count": 2147483647}),
        ("big=9223372036854775807", {"big": "9223372036854775807"}),
        ("big=-9007199254740993", {"big": "-9007199254740993"}),
        ("ubig=18446744073709551615", {"ubig": "18446744073709551615"}),
        ("signed=-7", {"signed": -7}),
        ("fixed=18446744073709551615", {"fixed": "18446744073709551615"}),
        ("small=4294967295", {"small": 4294967295}),
        # floating point, with ProtoJSON's special values
        ("ratio=2.5", {"ratio": 2.5}),
        ("ratio=-1e-3", {"ratio": -0.001}),
        ("ratio=NaN", {"ratio": "NaN"}),
        ("ratio=Infinity", {"ratio": "Infinity"}),
        ("ratio=-Infinity", {"ratio": "-Infinity"}),
        ("fraction=1.5", {"fraction": 1.5}),
        # booleans: true/false and 1/0
        ("active=true", {"active": True}),
        ("active=false", {"active": False}),
        ("active=1", {"active": True}),
        ("active=0", {"active": False}),
        # enums by name and by number
        ("color=COLOR_RED", {"color": "COLOR_RED"}),
        ("color=2", {"color": "COLOR_GREEN"}),
        # bytes: standard and URL-safe base64, with and without padding
        ("blob=AP8%3D", {"blob": "AP8="}),
        ("blob=AP8", {"blob": "AP8="}),
        ("blob=%2B%2F8%3D", {"blob": "+/8="}),
        ("blob=-_8", {"blob": "+/8="}),
        ("blob=-_8%3D", {"blob": "+/8="}),
        # repeated scalars and enums repeat the key
        ("tags=a&tags=b", {"tags": ["a", "b"]}),
        ("numbers=1&numbers=9007199254740993", {"numbers": ["1", "9007199254740993"]}),
        ("colors=COLOR_RED&colors=2", {"colors": ["COLOR_RED", "COLOR_GREEN"]}),
        # nested fields by dotted path, in either naming
        ("nested.level=3&nested.inner.note=hi", {"nested": {"id": "", "level": 3, "inner": {"note": "hi"}}}),
        ("nested.inner.note=x", {"nested": {"id": "", "level": 0, "inner": {"note": "x"}}}),
        # well-known types in their JSON text forms
        ("createTime=2024-01-02T03:04:05%2B02:00", {"createTime": "2024-01-02T01:04:05Z"}),
        ("create_time=2024-01-02T03:04:05.250Z", {"createTime": "2024-01-02T03:04:05.250Z"}),
        ("ttl=1.5s", {"ttl": "1.500s"}),
        ("ttl=-3s", {"ttl": "-3s"}),
        ("mask=displayName,nested.level", {"mask": "displayName,nested.level"}),
        ("mask=display_name,nested.inner", {"mask": "displayName,nested.inner"}),
        ("nickname=nick", {"nickname": "nick"}),
        ("nickname=", {"nickname": ""}),
        ("limit=9007199254740993", {"limit": "9007199254740993"}),
        ("flag=true", {"flag": True}),
        ("flag=false", {"flag": False}),  # a wrapper has presence: false is printed
        ("score=0.25", {"score": 0.25}),
        # presence: proto3 optional and oneof members set to their zero value
        ("maybe=", {"maybe": ""}),
        ("number=0", {"number": 0}),
        # URL decoding: + is a space, %XX anything
        ("displayName=a+b%20c%2Bd", {"displayName": "a b c+d"}),
        ("displayName=%E2%9C%93%20ok", {"displayName": "✓ ok"}),
        ("nested.inner.note=a%26b%3Dc", {"nested": {"id": "", "level": 0, "inner": {"note": "a&b=c"}}}),
    ],
)
async def test_query_values(client: httpx.AsyncClient, query, expected):
    response = await client.get(f"{ECHO}?{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {key: body.get(key) for key in expected} == expected
    assert body["name"] == "q"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("count=abc", "count"),
        ("count=1.5", "count"),
        ("count=2147483648", "count"),  # int32 out of range
        ("count=-2147483649", "count"),
        ("small=-1", "small"),
        ("small=4294967296", "small"),
        ("ubig=-1", "ubig"),
        ("big=9223372036854775808", "big"),
        ("big=1e3", "big"),
        ("ratio=abc", "ratio"),
        ("active=yes", "active"),
        ("color=COLOR_BLUE", "color"),  # unknown enum name
        ("color=7", "color"),  # undefined enum number
        ("colors=COLOR_RED&colors=nope", "colors"),
        ("blob=***", "blob"),
        ("createTime=yesterday", "createTime"),
        ("ttl=5", "ttl"),
        ("limit=x", "limit"),
        ("count=1&count=2", "count"),  # a non-repeated field given twice
        ("displayName=a&display_name=b", "displayName"),  # … also under its two names
        ("labels=a", "labels"),  # a map from the query
        ("labels.k=v", "labels.k"),
        ("children.id=x", "children.id"),  # through a repeated message
        ("nested=x", "nested"),  # a plain message
        ("attributes=x", "attributes"),
        ("count.x=1", "count.x"),  # through a scalar
        ("text=t&number=3", "number"),  # two members of one oneof
    ],
)
async def test_bad_query_values_are_400_naming_the_field(client: httpx.AsyncClient, query, field):
    body = assert_status(await client.get(f"{ECHO}?{query}"), 400, 3)
    assert field_violations(body) == [field]
    assert field in body["message"]


async def test_unknown_query_parameters_are_ignored_by_default(client: httpx.AsyncClient):
    response = await client.get(f"{ECHO}?unknownThing=1&nested.bogus=2&displayName=kept")
    assert response.status_code == 200, response.text
    assert response.json()["displayName"] == "kept"
    assert "nested" not in response.json()


@pytest.mark.parametrize("query", ["unknownThing=1", "nested.bogus=2", "name=other"])
async def test_unknown_or_redundant_query_parameters_are_400_in_strict_mode(strict_client: httpx.AsyncClient, query):
    body = assert_status(await strict_client.get(f"{ECHO}?{query}"), 400, 3)
    assert field_violations(body) == [query.split("=", 1)[0]]


async def test_strict_mode_still_ignores_the_well_known_parameters(strict_client: httpx.AsyncClient):
    response = await strict_client.get(f"{ECHO}?api_key=k&access_token=t&prettyPrint=true&count=2")
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 2


async def test_query_cannot_override_a_path_variable(client: httpx.AsyncClient):
    response = await client.get(f"{ECHO}?name=other")
    assert response.status_code == 200
    assert response.json()["name"] == "q"


async def test_query_cannot_override_path_or_body_fields_of_create(client: httpx.AsyncClient):
    response = await client.post(
        "/v1/shelves/s1/items?parent=shelves/zz&item.displayName=query&itemId=i5",
        json={"displayName": "body"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "shelves/s1/items/i5"  # parent from the path, item_id from the query
    assert response.json()["displayName"] == "body"


async def test_query_fills_the_fields_a_body_field_leaves(client: httpx.AsyncClient):
    response = await client.post("/v1/echo/n1:tags?count=3&displayName=d", json=["x", "y"])
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("name", "tags", "count", "displayName")} == {
        "name": "n1",
        "tags": ["x", "y"],
        "count": 3,
        "displayName": "d",
    }


async def test_stream_request_from_query(client: httpx.AsyncClient):
    response = await client.get("/v1/shelves/s1/items:stream?count=2&fail_after=-1")
    assert response.status_code == 200
    assert len(response.text.splitlines()) == 2
