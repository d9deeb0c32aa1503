"""Property-based API testing of the live edge with a hostile-input profile: no 5xx, ever.

The whole mesh runs as a real process, as in ``test_schemathesis.py``. For every operation
of the edge's /openapi.json, schemathesis generates one request (derandomized, so the run
is the same every time), and the test sends it again and again made hostile:

- with malformed and forged bearer tokens (padded, ``alg: none``, duplicate members, a
  header nested thousands of levels deep, another key's signature, garbage);
- as the platform administrator, with a JSON body nested far deeper than the edge allows;
- as the platform administrator, with a half-megabyte string in the body (within the
  body cap) or long query values.

The edge must never answer 5xx except the deliberate ones (501: not implemented in this
release; 503: a service down), and every error is a google.rpc.Status body (an RFC 6749
error object on the OAuth endpoints).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings

from tests.support.processes import served_mesh

DELIBERATE = {501, 503}
# The OAuth endpoints answer RFC 6749 §5.2 error objects, not google.rpc.Status (docs/OAUTH.md).
OAUTH_PATHS = {"/v1/auth/token", "/v1/auth/revoke"}
ROOT_EMAIL = "root@hostile.example"
ROOT_PASSWORD = "a-long-root-password-for-tests"
HUGE = "x" * 512 * 1024  # half a megabyte, well within the edge's 4 MiB body cap


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hostile_tokens() -> dict[str, str]:
    attacker = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {
        "iss": "https://identity.vocelio.local",
        "aud": "vocelio",
        "sub": "users/u_x",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j",
        "org": "org_a",
        "role": "ADMIN",
    }
    forged = jwt.encode(claims, attacker, algorithm="ES256", headers={"typ": "at+jwt", "kid": "k1"})
    head, body, signature = forged.split(".")
    deep_header = '{"alg": "ES256", "typ": "at+jwt", "kid": "k1", "x": ' + "[" * 2500 + "]" * 2500 + "}"
    return {
        "forged": forged,
        "padded": f"{head}=.{body}=.{signature}==",
        "alg none": _b64(b'{"alg":"none","typ":"at+jwt"}') + f".{body}.",
        "duplicate alg": _b64(b'{"alg":"none","alg":"ES256","typ":"at+jwt","kid":"k1"}') + f".{body}.{signature}",
        "deep header": f"{_b64(deep_header.encode())}.{body}.{signature}",
        "api key shaped": "vk_" + "A" * 40,
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with (
        served_mesh(
            tmp_path_factory,
            VOCELIO_BOOTSTRAP_ADMIN_EMAIL=ROOT_EMAIL,
            VOCELIO_BOOTSTRAP_ADMIN_PASSWORD=ROOT_PASSWORD,
        ) as (base, _offset),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        login = client.post(
            "/v1/auth/token", json={"grant_type": "password", "username": ROOT_EMAIL, "password": ROOT_PASSWORD}
        )
        assert login.status_code == 200, login.text
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        yield client, schema, login.json()["access_token"]


def _with_a_huge_string(body: Any) -> Any:
    """The body with its first string field (or a ``name``) half a megabyte long."""
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, str):
                return {**body, key: HUGE}
        return {**body, "name": HUGE}
    return {"name": HUGE}


def _variants(case: Any, root: str, index: int) -> list[tuple[str, dict[str, Any]]]:
    body = case.body if isinstance(case.body, (dict, list)) else None
    query = dict(case.query or {})
    plain: dict[str, Any] = {"params": query}
    if body is not None:
        plain["json"] = body
    # Two bad tokens per operation, taking turns, so every token meets a share of every kind of operation.
    names = sorted(TOKENS)
    chosen = [names[(2 * index + turn) % len(names)] for turn in range(2)]
    variants = [(f"token {name}", {**plain, "headers": {"Authorization": f"Bearer {TOKENS[name]}"}}) for name in chosen]
    as_root = {"Authorization": f"Bearer {root}"}
    if case.method.upper() in ("POST", "PUT", "PATCH"):
        deep = '{"a": ' * 20_000 + "1" + "}" * 20_000
        variants.append(
            (
                "deep JSON",
                {"params": query, "content": deep, "headers": {**as_root, "Content-Type": "application/json"}},
            )
        )
        huge = json.dumps(_with_a_huge_string(body))
        variants.append(
            (
                "huge strings",
                {"params": query, "content": huge, "headers": {**as_root, "Content-Type": "application/json"}},
            )
        )
    else:
        variants.append(
            ("long query", {"params": {**query, "filter": "x" * 2000, "pageToken": "y" * 2000}, "headers": as_root})
        )
    return variants


TOKENS = _hostile_tokens()


def _one_case(operation: Any) -> Any:
    """The operation's first derandomized example: the same request on every run."""
    cases: list[Any] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def generate(case: Any) -> None:
        cases.append(case)

    generate()
    return cases[0]


@pytest.fixture(scope="module")
def cases(live) -> list[tuple[int, Any, bool]]:
    """Every operation's example request, with its index and whether the operation is public."""
    _client, schema, _root = live
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 300
    return [
        (index, _one_case(operation), operation.definition.raw.get("security") == [])
        for index, operation in enumerate(operations)
    ]


async def _send_all(base_url: str, planned: list[tuple[Any, bool, str, dict[str, Any]]]) -> list[str]:
    """Send every planned request (a few at a time) and describe each that broke the rules."""
    failures: list[str] = []
    limit = asyncio.Semaphore(6)

    async def send(http: httpx.AsyncClient, case: Any, public: bool, name: str, request: dict[str, Any]) -> None:
        async with limit:
            response = await http.request(case.method.upper(), case.formatted_path, **request)
        where = f"{case.method} {case.formatted_path} ({name}) -> {response.status_code} {response.text[:200]!r}"
        if response.status_code >= 500 and response.status_code not in DELIBERATE:
            failures.append(where)
        elif response.status_code >= 400:
            body = response.json() if "json" in response.headers.get("content-type", "") else None
            if case.path in OAUTH_PATHS and isinstance(body, dict) and "error" in body:
                pass  # an RFC 6749 error object
            elif not (isinstance(body, dict) and set(body) == {"code", "message", "details"}):
                failures.append(where + " (not a google.rpc.Status body)")
        # Only public operations may answer a bad token with success.
        if name.startswith("token") and response.status_code < 400 and not public:
            failures.append(where + " (a bad token was accepted)")

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await asyncio.gather(*(send(http, *plan) for plan in planned))
    return sorted(failures)


async def test_no_operation_answers_a_bad_token_with_a_5xx(live, cases):
    client, _schema, root = live
    planned = [
        (case, public, name, request)
        for index, case, public in cases
        for name, request in _variants(case, root, index)
        if name.startswith("token")
    ]
    assert len(planned) == 2 * len(cases)
    failures = await _send_all(str(client.base_url), planned)
    assert not failures, f"{len(failures)} hostile requests failed:\n" + "\n".join(failures[:30])


async def test_no_operation_answers_deep_json_or_huge_values_with_a_5xx(live, cases):
    client, _schema, root = live
    planned = [
        (case, public, name, request)
        for index, case, public in cases
        for name, request in _variants(case, root, index)
        if not name.startswith("token")
    ]
    assert len(planned) >= len(cases)
    failures = await _send_all(str(client.base_url), planned)
    assert not failures, f"{len(failures)} hostile requests failed:\n" + "\n".join(failures[:30])
