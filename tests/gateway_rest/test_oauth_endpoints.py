"""The edge's RFC 6749 token and RFC 7009 revocation endpoints, against a scripted identity.

A real gRPC server on port 0 plays identity (it records what reached it and answers what the
test scripts, including rich error statuses); the real edge (uvicorn on port 0, the Vocelio
catalogue, so the transcoder's own binding of the same paths is there too) sits in front.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway_rest.app import create_app
from gateway_rest.descriptors import Catalog
from gateway_rest.oauth import IDENTITY_SERVICE, OAuthEndpoints, OAuthOptions
from gateway_rest.transcoder import EdgeOptions
from gateway_rest.upstreams import Upstream, Upstreams
from mesh.registry import default_descriptor_set
from services.developer_api.credentials import looks_like_secret
from tests.support.edge import serve_app
from vocelio.identity.v1 import identity_service_pb2 as pb
from vocelio.identity.v1 import identity_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "/v1/auth/token"
REVOKE = "/v1/auth/revoke"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
KEY_NAME = "organizations/o1/api_keys/k1"
KEY_SECRET = "vk_live_" + "A" * 40
REPLY = pb.IssueTokenResponse(
    access_token="header.payload.signature",
    token_type="Bearer",
    expires_in=900,
    refresh_token="refresh-1",
    organization_id="o1",
    refresh_token_expires_in=3600,
)


def _packed(message: Any) -> any_pb2.Any:
    holder = any_pb2.Any()
    holder.Pack(message)
    return holder


def grant_failure(code: int, oauth_error: str, message: str) -> status_pb2.Status:
    """What identity's rich_errors sends for a failed grant."""
    info = error_details_pb2.ErrorInfo(
        reason=oauth_error.upper(), domain="identity.vocelio.com", metadata={"oauth_error": oauth_error}
    )
    return status_pb2.Status(code=code, message=message, details=[_packed(info)])


def rate_limited(seconds: int) -> status_pb2.Status:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds))
    info = error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="identity.vocelio.com")
    return status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED, message="too many sign-in attempts", details=[_packed(retry), _packed(info)]
    )


class ScriptedIdentity(pb_grpc.IdentityServiceServicer):
    """Records each call and answers with ``self.answer`` (a reply or a ``google.rpc.Status``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, str]]] = []
        self.answer: Any = REPLY

    async def _respond(self, method: str, request: Any, context: Any, default: Any) -> Any:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.calls.append((method, request, metadata))
        answer = self.answer if method == "IssueToken" or isinstance(self.answer, status_pb2.Status) else default
        if isinstance(answer, status_pb2.Status):
            await context.abort_with_status(rpc_status.to_status(answer))
        return answer

    async def IssueToken(self, request: Any, context: Any) -> Any:
        return await self._respond("IssueToken", request, context, REPLY)

    async def RevokeToken(self, request: Any, context: Any) -> Any:
        return await self._respond("RevokeToken", request, context, pb.RevokeTokenResponse())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def identity() -> AsyncIterator[tuple[ScriptedIdentity, int]]:
    servicer = ScriptedIdentity()
    server = grpc.aio.server()
    pb_grpc.add_IdentityServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(grace=None)


@contextlib.asynccontextmanager
async def edge_at(address: str, options: EdgeOptions | None = None) -> AsyncIterator[httpx.AsyncClient]:
    upstreams = Upstreams([Upstream("identity", "Identity", address, (IDENTITY_SERVICE,))])
    edge_options = options or EdgeOptions()
    endpoints = OAuthEndpoints(upstreams, edge_options, OAuthOptions(unrevocable=looks_like_secret))
    app = create_app(
        upstreams, Catalog.from_file(default_descriptor_set()), options=edge_options, extra_routes=endpoints.routes()
    )
    async with (
        serve_app(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edge(identity: tuple[ScriptedIdentity, int]) -> AsyncIterator[httpx.AsyncClient]:
    async with edge_at(f"127.0.0.1:{identity[1]}", EdgeOptions(max_body_bytes=2048)) as client:
        yield client


@pytest.fixture
def fake(identity: tuple[ScriptedIdentity, int]) -> ScriptedIdentity:
    servicer = identity[0]
    servicer.calls.clear()
    servicer.answer = REPLY
    return servicer


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: form-urlencode both halves, then base64."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def assert_oauth_error(response: httpx.Response, http: int, error: str) -> dict[str, Any]:
    assert response.status_code == http, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"]
    return body


# Token endpoint: bodies and the §5.1 response.


async def test_a_form_body_gets_an_rfc_6749_token_response_with_no_store(edge, fake):
    response = await edge.post(
        TOKEN,
        data={"grant_type": "password", "username": "ada@example.com", "password": "pw one two", "client_id": "app"},
        headers={"X-Request-Id": "req-1", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    assert response.status_code == 200, response.text
    assert_no_store(response)
    assert response.json() == {
        "access_token": "header.payload.signature",
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": "refresh-1",
        "refresh_token_expires_in": 3600,
        "organization_id": "o1",
    }
    ((method, request, metadata),) = fake.calls
    assert method == "IssueToken"
    assert (request.grant_type, request.username, request.password) == ("password", "ada@example.com", "pw one two")
    assert request.client_id == "" and request.client_secret == ""  # a public client's id is not passed on
    # The same metadata the transcoder sends: request id, trace context, the client's address.
    assert metadata["x-request-id"] == "req-1"
    assert metadata["traceparent"].startswith("00-aaaa")
    assert metadata["x-forwarded-for"] == "127.0.0.1"
    assert response.headers["x-request-id"] == "req-1"


async def test_the_json_body_of_existing_clients_still_works(edge, fake):
    response = await edge.post(TOKEN, json={"grant_type": "refresh_token", "refresh_token": "refresh-0"})
    assert response.status_code == 200, response.text
    assert response.json()["access_token"] == "header.payload.signature"
    assert fake.calls[0][1].refresh_token == "refresh-0"


async def test_scope_is_returned_and_empty_optional_members_are_left_out(edge, fake):
    fake.answer = pb.IssueTokenResponse(
        access_token="t", token_type="Bearer", expires_in=600, scope="agents.list", organization_id="o1"
    )
    response = await edge.post(TOKEN, data={"grant_type": "client_credentials"}, headers=basic(KEY_NAME, KEY_SECRET))
    assert response.json() == {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 600,
        "scope": "agents.list",
        "organization_id": "o1",
    }


async def test_other_media_types_get_415_and_malformed_bodies_400(edge, fake):
    wrong = await edge.post(TOKEN, content=b"grant_type=password", headers={"Content-Type": "text/plain"})
    assert_oauth_error(wrong, 415, "invalid_request")
    bad_json = await edge.post(TOKEN, content=b'{"grant_type": ', headers={"Content-Type": "application/json"})
    assert_oauth_error(bad_json, 400, "invalid_request")
    deep = await edge.post(TOKEN, content=b"[" * 1000 + b"]" * 1000, headers={"Content-Type": "application/json"})
    assert_oauth_error(deep, 400, "invalid_request")
    not_text = await edge.post(TOKEN, json={"grant_type": 7})
    assert_oauth_error(not_text, 400, "invalid_request")
    assert fake.calls == []


async def test_a_repeated_parameter_is_invalid_request(edge, fake):
    response = await edge.post(TOKEN, content=b"grant_type=password&grant_type=refresh_token", headers=FORM)
    assert_oauth_error(response, 400, "invalid_request")
    duplicate_json = await edge.post(
        TOKEN, content=b'{"grant_type":"password","grant_type":"x"}', headers={"Content-Type": "application/json"}
    )
    assert_oauth_error(duplicate_json, 400, "invalid_request")
    assert fake.calls == []


async def test_an_oversized_body_gets_413_with_no_store(edge, fake):
    response = await edge.post(TOKEN, data={"grant_type": "password", "password": "x" * 4096})
    assert_oauth_error(response, 413, "invalid_request")
    assert fake.calls == []


async def test_only_post_is_allowed(edge, fake):
    response = await edge.get(TOKEN)
    assert_oauth_error(response, 405, "invalid_request")
    assert response.headers["allow"] == "POST"


# Client authentication.


async def test_http_basic_credentials_are_form_urldecoded(edge, fake):
    secret = "s3cr3t:with colon+plus%"
    response = await edge.post(TOKEN, data={"grant_type": "client_credentials"}, headers=basic(KEY_NAME, secret))
    assert response.status_code == 200, response.text
    _, request, metadata = fake.calls[0]
    assert (request.client_id, request.client_secret) == (KEY_NAME, secret)
    assert "authorization" not in metadata  # the credentials travel in the message only


async def test_body_client_credentials_are_passed_on(edge, fake):
    body = {"grant_type": "client_credentials", "client_id": KEY_NAME, "client_secret": KEY_SECRET}
    response = await edge.post(TOKEN, data=body)
    assert response.status_code == 200, response.text
    assert (fake.calls[0][1].client_id, fake.calls[0][1].client_secret) == (KEY_NAME, KEY_SECRET)


async def test_basic_and_a_body_secret_together_are_invalid_request(edge, fake):
    body = {"grant_type": "client_credentials", "client_secret": KEY_SECRET}
    response = await edge.post(TOKEN, data=body, headers=basic(KEY_NAME, KEY_SECRET))
    assert_oauth_error(response, 400, "invalid_request")
    assert KEY_SECRET not in response.text
    other_id = await edge.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": "someone"}, headers=basic(KEY_NAME, KEY_SECRET)
    )
    assert_oauth_error(other_id, 400, "invalid_request")
    same_id = await edge.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": KEY_NAME}, headers=basic(KEY_NAME, KEY_SECRET)
    )
    assert same_id.status_code == 200, same_id.text
    assert len(fake.calls) == 1


async def test_two_authorization_headers_are_invalid_request(edge, fake):
    header = basic(KEY_NAME, KEY_SECRET)["Authorization"]
    response = await edge.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=[("Authorization", header), ("Authorization", header)],
    )
    assert_oauth_error(response, 400, "invalid_request")
    assert fake.calls == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer some.jwt.token", "Basic not-base64!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic"],
)
async def test_a_malformed_or_foreign_authorization_is_invalid_client_401(edge, fake, authorization):
    response = await edge.post(
        TOKEN, data={"grant_type": "client_credentials"}, headers={"Authorization": authorization}
    )
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="vocelio"'
    assert fake.calls == []


async def test_client_credentials_without_a_secret_is_invalid_client(edge, fake):
    response = await edge.post(TOKEN, data={"grant_type": "client_credentials", "client_id": KEY_NAME})
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="vocelio"'
    assert fake.calls == []


async def test_a_client_secret_on_a_user_grant_is_unauthorized_client(edge, fake):
    body = {"grant_type": "password", "username": "ada@example.com", "password": "pw"}
    response = await edge.post(TOKEN, data=body, headers=basic(KEY_NAME, KEY_SECRET))
    assert_oauth_error(response, 400, "unauthorized_client")
    assert KEY_SECRET not in response.text
    assert fake.calls == []


# Identity's errors, as RFC 6749 §5.2.


async def test_invalid_grant_is_400_not_401(edge, fake):
    fake.answer = grant_failure(
        code_pb2.UNAUTHENTICATED, "invalid_grant", "the e-mail address or the password is wrong"
    )
    response = await edge.post(TOKEN, data={"grant_type": "password", "username": "a@b.c", "password": "hunter2"})
    body = assert_oauth_error(response, 400, "invalid_grant")
    assert body["error_description"] == "the e-mail address or the password is wrong"
    assert "hunter2" not in response.text
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    ("code", "oauth_error"),
    [
        (code_pb2.INVALID_ARGUMENT, "invalid_request"),
        (code_pb2.INVALID_ARGUMENT, "unsupported_grant_type"),
        (code_pb2.INVALID_ARGUMENT, "invalid_scope"),
    ],
)
async def test_request_errors_are_400_with_the_rfc_code(edge, fake, code, oauth_error):
    fake.answer = grant_failure(code, oauth_error, "refused")
    response = await edge.post(TOKEN, data={"grant_type": "password", "username": "a@b.c", "password": "x"})
    assert_oauth_error(response, 400, oauth_error)


async def test_invalid_client_is_401_with_the_basic_challenge_either_way(edge, fake):
    fake.answer = grant_failure(code_pb2.UNAUTHENTICATED, "invalid_client", "client authentication failed")
    with_basic = await edge.post(TOKEN, data={"grant_type": "client_credentials"}, headers=basic(KEY_NAME, "wrong"))
    assert_oauth_error(with_basic, 401, "invalid_client")
    assert with_basic.headers["www-authenticate"] == 'Basic realm="vocelio"'
    in_body = await edge.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": KEY_NAME, "client_secret": "wrong"}
    )
    assert_oauth_error(in_body, 401, "invalid_client")
    assert in_body.headers["www-authenticate"] == 'Basic realm="vocelio"'


async def test_a_validation_error_without_an_rfc_code_is_invalid_request(edge, fake):
    fake.answer = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="scope: too long")
    response = await edge.post(TOKEN, data={"grant_type": "password", "username": "a@b.c", "password": "x"})
    assert_oauth_error(response, 400, "invalid_request")


async def test_rate_limits_are_429_with_retry_after_from_retry_info(edge, fake):
    fake.answer = rate_limited(7)
    response = await edge.post(TOKEN, data={"grant_type": "password", "username": "a@b.c", "password": "x"})
    assert_oauth_error(response, 429, "slow_down")
    assert response.headers["retry-after"] == "7"


async def test_a_shedding_identity_is_503_with_retry_after_from_its_retry_info(edge, fake):
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=100_000_000))
    fake.answer = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="overloaded", details=[_packed(retry)])
    response = await edge.post(TOKEN, data={"grant_type": "password", "username": "a@b.c", "password": "x"})
    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "3"  # the transcoder's rule: RetryInfo, rounded up


async def test_an_internal_failure_of_identity_is_server_error(edge, fake):
    fake.answer = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error (incident abc)")
    response = await edge.post(TOKEN, data={"grant_type": "password", "username": "a@b.c", "password": "x"})
    assert_oauth_error(response, 500, "server_error")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_identity_unreachable_is_503_with_retry_after_and_no_address():
    port = _closed_port()
    async with edge_at(f"127.0.0.1:{port}") as client:
        response = await client.post(TOKEN, data={"grant_type": "password", "username": "a@b.c", "password": "x"})
        revoke = await client.post(REVOKE, data={"token": "t"})
    for answer in (response, revoke):
        assert_oauth_error(answer, 503, "temporarily_unavailable")
        assert answer.headers["retry-after"] == "1"
        assert str(port) not in answer.text


# Revocation (RFC 7009).


async def test_revocation_takes_a_form_and_answers_200_with_an_empty_body(edge, fake):
    response = await edge.post(REVOKE, data={"token": "refresh-1", "token_type_hint": "refresh_token"})
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert_no_store(response)
    ((method, request, metadata),) = fake.calls
    assert method == "RevokeToken"
    assert (request.token, request.token_type_hint) == ("refresh-1", "refresh_token")
    assert metadata["x-forwarded-for"] == "127.0.0.1"


async def test_revocation_accepts_json_and_client_authentication(edge, fake):
    assert (await edge.post(REVOKE, json={"token": "a.b.c"})).status_code == 200
    with_basic = await edge.post(REVOKE, data={"token": "a.b.c"}, headers=basic("app", "x"))
    assert with_basic.status_code == 200
    both = await edge.post(REVOKE, data={"token": "a.b.c", "client_secret": "x"}, headers=basic("app", "x"))
    assert_oauth_error(both, 400, "invalid_request")
    assert len(fake.calls) == 2


async def test_revocation_without_a_token_is_invalid_request(edge, fake):
    response = await edge.post(REVOKE, data={"token_type_hint": "access_token"})
    assert_oauth_error(response, 400, "invalid_request")
    assert fake.calls == []


async def test_an_api_key_secret_is_an_unsupported_token_type(edge, fake):
    response = await edge.post(REVOKE, data={"token": KEY_SECRET})
    assert_oauth_error(response, 400, "unsupported_token_type")
    assert KEY_SECRET not in response.text
    assert fake.calls == []


async def test_revocation_rate_limits_are_429(edge, fake):
    fake.answer = rate_limited(3)
    response = await edge.post(REVOKE, data={"token": "t"})
    assert_oauth_error(response, 429, "slow_down")
    assert response.headers["retry-after"] == "3"


async def test_the_endpoints_are_counted_in_the_edge_metrics(edge, fake):
    assert (await edge.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": "r"})).status_code == 200
    assert (await edge.post(REVOKE, data={})).status_code == 400
    text = (await edge.get("/metrics")).text
    identity = "/vocelio.identity.v1.IdentityService"
    assert (
        f'vocelio_edge_requests_total{{grpc_method="{identity}/IssueToken",method="POST",'
        'route="/v1/auth/token",status="200"}'
    ) in text
    assert (
        f'vocelio_edge_requests_total{{grpc_method="{identity}/RevokeToken",method="POST",'
        'route="/v1/auth/revoke",status="400"}'
    ) in text
    assert (
        f'vocelio_edge_errors_total{{grpc_code="INVALID_ARGUMENT",grpc_method="{identity}/RevokeToken",'
        'method="POST",route="/v1/auth/revoke"}'
    ) in text
