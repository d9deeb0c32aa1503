"""REST edge conformance: routing by google.api.http path templates, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway_rest.conftest import assert_status

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        # {name} — a simple single-segment variable
        ("GET", "/v1/echo/abc", {"name": "abc"}),
        # single-segment variables are fully percent-decoded, %2F included
        ("GET", "/v1/echo/a%2Fb%20c", {"name": "a/b c"}),
        ("GET", "/v1/echo/caf%C3%A9", {"name": "café"}),
        # a colon that is no registered verb stays in the segment
        ("GET", "/v1/echo/x:y", {"name": "x:y"}),
        # {name=shelves/*/items/*} — a multi-segment variable
        ("GET", "/v1/shelves/s1/items/i1", {"name": "shelves/s1/items/i1", "displayName": "An item"}),
        # additional_bindings: the same method under /v2
        ("GET", "/v2/shelves/s1/items/i1", {"name": "shelves/s1/items/i1", "displayName": "An item"}),
        # custom HTTP method (custom: {kind: "SEARCH"})
        ("SEARCH", "/v1/shelves/s1/items/i1", {"name": "shelves/s1/items/i1", "displayName": "described"}),
        # custom verb
        ("POST", "/v1/shelves/s1/items/i1:cancel", {"name": "shelves/s1/items/i1", "displayName": "cancelled"}),
        # an unregistered verb is part of the last segment (no template claims ":archive")
        ("GET", "/v1/shelves/s1/items/i1:archive", {"name": "shelves/s1/items/i1:archive"}),
        # percent-encoded literals match their decoded template literals
        ("GET", "/v1/%73helves/s1/items/i1", {"name": "shelves/s1/items/i1"}),
        ("GET", "/%76%31/echo/abc", {"name": "abc"}),
        ("GET", "/v1/shelves/s1/%69tems/i1", {"name": "shelves/s1/items/i1"}),
    ],
)
async def test_routes_to_the_method_with_the_path_variables(client: httpx.AsyncClient, method, path, expected):
    response = await client.request(method, path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {key: body[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/files", ""),  # ** matches zero segments
        ("/v1/files/a", "a"),
        ("/v1/files/a/b/c.txt", "a/b/c.txt"),
        ("/v1/files/a%2Fb/c", "a%2Fb/c"),  # reserved expansion: %2F stays encoded inside **
        ("/v1/files/a%2fb", "a%2fb"),
        ("/v1/files/dir/my%20file%3F.txt", "dir/my file?.txt"),  # everything else is decoded
    ],
)
async def test_double_star_variable(client: httpx.AsyncClient, path, expected):
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.json() == {"path": expected}


async def test_nested_field_path_variable_in_update(client: httpx.AsyncClient):
    response = await client.patch("/v1/shelves/s1/items/i1", json={"displayName": "renamed"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "shelves/s1/items/i1"  # request.item.name came from the path
    assert response.json()["displayName"] == "renamed"


async def test_parent_variable_followed_by_literal(client: httpx.AsyncClient):
    response = await client.post("/v1/shelves/s9/items", json={})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "shelves/s9/items/generated"


async def test_put_additional_binding_with_whole_body(client: httpx.AsyncClient):
    response = await client.put(
        "/v1/shelves/s1/items/i1", json={"item": {"displayName": "put"}, "updateMask": "displayName"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "shelves/s1/items/i1"
    assert response.json()["displayName"] == "put"
    assert response.json()["mask"] == "displayName"


async def test_verbs_pick_their_own_methods(client: httpx.AsyncClient):
    nested = await client.get("/v1/shelves/s1/items/i1:nested")
    tags = await client.get("/v1/shelves/s1/items/i1:tags")
    echoed = await client.post("/v1/echo/n1:tags", json=["x"])
    collection = await client.post("/v1/echo:body", json={"name": "from-body"})
    assert nested.json() == {"id": "n1", "level": 2, "inner": {"note": "deep"}}
    assert tags.json() == ["a", "b"]
    assert echoed.json()["name"] == "n1"
    assert echoed.json()["tags"] == ["x"]
    assert collection.json()["name"] == "from-body"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/shelves/s1/items/i1/"),  # trailing slash
        ("GET", "/v1/echo/abc/"),
        ("POST", "/v1/echo:body/"),
        ("GET", "/v1/nope"),
        ("GET", "/v3/shelves/s1/items/i1"),
        ("GET", "/v1/shelves/s1"),  # a prefix of a template
        ("GET", "/v1/shelves/s1/items/i1/extra"),
        ("GET", "/v1/shelves//items/i1"),  # * never matches an empty segment
        ("GET", "/"),
        ("GET", "/v1/echo/"),
    ],
)
async def test_no_route_is_404(client: httpx.AsyncClient, method, path):
    body = assert_status(await client.request(method, path), 404, 5)
    assert body["details"] == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v1/shelves/s1/items/i1", "DELETE, GET, PATCH, PUT, SEARCH"),
        ("DELETE", "/v1/echo:body", "POST"),
        ("PUT", "/v1/files/a/b", "GET"),
        ("GET", "/v1/shelves/s1/items/i1:cancel", "POST"),  # the verb matched: no fallback to GetItem
        ("HEAD", "/v1/fail", "POST"),
        ("OPTIONS", "/v1/echo/x", "GET"),
    ],
)
async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient, method, path, allow):
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        body = assert_status(response, 405, 12)
        assert method in body["message"]


async def test_head_on_a_get_route(client: httpx.AsyncClient):
    get = await client.get("/v1/shelves/s1/items/i1")
    head = await client.head("/v1/shelves/s1/items/i1")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == str(len(get.content))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/conformance.v1.ConformanceService/Hidden"),
        ("GET", "/conformance.v1.ConformanceService/Hidden"),
        ("POST", "/conformance.v1.ConformanceService/GetItem"),  # bound methods are not auto-mapped either
        ("POST", "/v1/hidden"),
        ("GET", "/v1/Hidden"),
    ],
)
async def test_unbound_method_is_not_exposed(client: httpx.AsyncClient, method, path):
    assert_status(await client.request(method, path, json={"name": "x"}), 404, 5)


async def test_client_streaming_is_501(client: httpx.AsyncClient):
    body = assert_status(await client.post("/v1/collect", json={"name": "x"}), 501, 12)
    assert "client-streaming" in body["message"]
