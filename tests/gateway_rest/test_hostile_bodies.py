"""Hostile request bodies at the REST edge: deep JSON and huge values are 400s, never 5xx.

Python's ``json.loads`` runs before protobuf's parser (whose own limit is 100 levels), and
it recursed until the interpreter gave up: a body nested a few thousand levels deep was a
500. The edge now refuses JSON nested deeper than ``MAX_JSON_DEPTH`` with 400
INVALID_ARGUMENT, however deep it goes.
"""

from __future__ import annotations

import httpx
import pytest

from gateway_rest.errors import EdgeError
from gateway_rest.request_builder import MAX_JSON_DEPTH, parse_json_body
from tests.gateway_rest.conftest import PYTHON_TEXT, assert_status

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def _objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def _post(client: httpx.AsyncClient, body: str) -> httpx.Response:
    return await client.post("/v1/echo:body", content=body.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("shape", [_arrays, _objects])
async def test_the_depth_limit_is_exact(shape):
    assert parse_json_body(shape(MAX_JSON_DEPTH).encode()) is not None
    with pytest.raises(EdgeError) as refused:
        parse_json_body(shape(MAX_JSON_DEPTH + 1).encode())
    assert "nested deeper than" in refused.value.message


async def test_nested_json_well_within_the_limit_reaches_the_service(client: httpx.AsyncClient):
    # Each JSON level of a Struct is three protobuf levels, and protobuf stops at 100.
    response = await _post(client, '{"attributes": {"a": ' + _arrays(30) + "}}")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "body",
    [
        '{"attributes": {"a": ' + _arrays(MAX_JSON_DEPTH - 1) + "}}",
        '{"attributes": ' + _objects(MAX_JSON_DEPTH) + "}",
        '{"attributes": {"a": ' + _arrays(2_500) + "}}",
        '{"anything": ' + _arrays(100_000) + "}",
        _objects(50_000),
        _arrays(1_000_000),
        # not even valid JSON: the depth is what is refused, cheaply, before the syntax
        "[" * 1_000_000,
    ],
    ids=[
        "limit+1 arrays",
        "limit+1 objects",
        "2,500 arrays",
        "100,000 arrays",
        "50,000 objects",
        "a megabyte of []",
        "a megabyte of [",
    ],
)
async def test_json_deeper_than_the_limit_is_a_400(client: httpx.AsyncClient, body: str):
    response = await _post(client, body)
    error = assert_status(response, 400, 3)
    assert "nested deeper than" in error["message"] or "not valid JSON" in error["message"]
    assert not PYTHON_TEXT.search(response.text)


async def test_many_shallow_brackets_are_not_too_deep(client: httpx.AsyncClient):
    response = await _post(
        client,
        '{"tags": [' + ", ".join(['"x"'] * 20_000) + '], "attributes": {"a": [' + ",".join(["[]"] * 20_000) + "]}}",
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "' + "x" * 3_000_000 + '"}',
        '{"tags": ["' + '", "'.join(["y" * 1000] * 2000) + '"]}',
        '{"count": ' + "9" * 100_000 + "}",
        '{"fraction": 1e' + "9" * 10_000 + "}",
        '{"blob": "' + "A" * 2_000_000 + '"}',
        '{"labels": {' + ", ".join(f'"k{n}": "v"' for n in range(100_000)) + "}}",
    ],
    ids=[
        "3 MB string",
        "2,000 strings of 1 kB",
        "a 100,000-digit integer",
        "an exponent of 10,000 digits",
        "2 MB of bytes",
        "100,000 map entries",
    ],
)
async def test_huge_values_within_the_body_cap_are_never_a_5xx(client: httpx.AsyncClient, body: str):
    response = await _post(client, body)
    assert response.status_code < 500, response.text[:500]
    assert not PYTHON_TEXT.search(response.text[:10_000])
