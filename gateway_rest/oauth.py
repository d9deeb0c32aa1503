"""Identity's public endpoints at the edge: RFC 6749 token, RFC 7009 revocation, and the JWKS.

``POST /v1/auth/token`` and ``POST /v1/auth/revoke`` are fixed routes ahead of the
transcoder: they speak OAuth, not ProtoJSON. They take form bodies (and the JSON the edge
accepted before), HTTP Basic or body client authentication, call identity's ``IssueToken`` /
``RevokeToken`` over the edge's channel with the metadata the transcoder sends, and answer
§5.1 token JSON or §5.2 ``{"error", "error_description"}`` with ``Cache-Control: no-store``
on every response. Identity's grant failures carry the RFC code in
``ErrorInfo.metadata["oauth_error"]``; its rate limits a ``RetryInfo`` (→ 429 + Retry-After).

``GET /.well-known/jwks.json`` is ``GetJwks`` with cache headers (``Cache-Control: public,
max-age``, ``ETag``, 304 on ``If-None-Match``). Nothing here logs a parameter or a credential.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway_rest import oauth_params, responses
from gateway_rest.errors import EdgeError, http_status, retry_after_seconds, status_from_rpc_error, status_json
from gateway_rest.metrics import EdgeMetrics
from gateway_rest.oauth_params import ClientAuth, OAuthFailure
from gateway_rest.transcoder import EdgeOptions, read_body, upstream_metadata
from gateway_rest.upstreams import Upstreams
from mesh import request_id as request_ids
from vocelio.identity.v1 import identity_service_pb2 as pb

log = logging.getLogger(__name__)

IDENTITY_SERVICE = "vocelio.identity.v1.IdentityService"
TOKEN_PATH = "/v1/auth/token"
REVOKE_PATH = "/v1/auth/revoke"
JWKS_PATH = "/.well-known/jwks.json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
OAUTH_ERROR_KEY = "oauth_error"  # services/identity/oauth.py puts the RFC code here

_USER_GRANTS = ("password", "refresh_token")
_CLIENT_CREDENTIALS = "client_credentials"
_TOKEN_PARAMETERS = ("grant_type", "username", "password", "refresh_token", "scope", "organization_id")
_CREDENTIALS = ("authorization", "x-api-key")
# gRPC codes that mean "the grant was refused" when identity sent no RFC code.
_GRANT_REFUSED = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
)


@dataclasses.dataclass(frozen=True, slots=True)
class OAuthOptions:
    """How the OAuth endpoints behave.

    Attributes:
        realm: the realm of the ``WWW-Authenticate: Basic`` challenge.
        jwks_max_age: ``max-age`` of the JWKS, seconds; keep it below the time a retired key
            stays published (the access-token lifetime plus leeway).
        unrevocable: whether a presented token is of a kind RFC 7009 revocation does not
            handle here (API key secrets) → ``unsupported_token_type``.

    """

    realm: str = "vocelio"
    jwks_max_age: int = 300
    unrevocable: Callable[[str], bool] = lambda _token: False


class OAuthEndpoints:
    """The token, revocation and JWKS endpoints in front of identity."""

    def __init__(self, upstreams: Upstreams, options: EdgeOptions, oauth: OAuthOptions | None = None) -> None:
        self.upstreams = upstreams
        self.options = options
        self.oauth = oauth or OAuthOptions()
        self._callables: dict[str, Any] = {}

    def routes(self) -> list[Route]:
        """Starlette routes for the three paths (every method: the wrong ones get 405 here)."""
        return [
            Route(TOKEN_PATH, _AnyMethod(self.token), name="oauth_token"),
            Route(REVOKE_PATH, _AnyMethod(self.revoke), name="oauth_revoke"),
            Route(JWKS_PATH, _AnyMethod(self.jwks), name="jwks"),
        ]

    async def token(self, request: Request) -> Response:
        """RFC 6749 §3.2 token endpoint."""
        return await self._oauth(request, self._token)

    async def revoke(self, request: Request) -> Response:
        """RFC 7009 §2 revocation endpoint."""
        return await self._oauth(request, self._revoke)

    async def _oauth(self, request: Request, handler: Callable[..., Any]) -> Response:
        started = time.perf_counter()
        request_id = request_ids.for_request(request.headers.get("x-request-id"))
        code = "OK"
        try:
            if request.method != "POST":
                raise OAuthFailure(oauth_params.INVALID_REQUEST, "use POST", 405, {"Allow": "POST"})
            try:
                response: Response = await handler(request, request_id)
            except EdgeError as error:  # body too large, bad Content-Length, a header gRPC cannot carry
                if error.http == 401:
                    raise OAuthFailure(oauth_params.INVALID_CLIENT, "invalid client credentials", 401) from None
                raise OAuthFailure(oauth_params.INVALID_REQUEST, error.message, error.http) from None
        except OAuthFailure as failure:
            if failure.http == 401:
                failure.headers.setdefault("WWW-Authenticate", f'Basic realm="{self.oauth.realm}"')
            response = _error(failure)
            code = failure.grpc_code if isinstance(failure, _UpstreamFailed) else _CODE_OF_HTTP.get(failure.http, "")
        except Exception:
            incident = uuid.uuid4().hex[:16]
            log.exception("OAuth endpoint failure on %s (incident %s)", request.url.path, incident)
            response = _error(OAuthFailure(oauth_params.SERVER_ERROR, f"internal error (incident {incident})", 500))
            code = "INTERNAL"
        response.headers.update(NO_STORE)
        response.headers["X-Request-Id"] = request_id
        _observe(request, request.url.path, response.status_code, time.perf_counter() - started, code)
        return response

    async def _parameters(self, request: Request) -> tuple[dict[str, str], ClientAuth]:
        body = await read_body(request, self.options.max_body_bytes)
        parameters = oauth_params.parse_parameters(body, request.headers.get("content-type", ""))
        client = oauth_params.client_auth(request.headers.getlist("authorization"), parameters, self.oauth.realm)
        return parameters, client

    async def _token(self, request: Request, request_id: str) -> Response:
        parameters, client = await self._parameters(request)
        grant_type = parameters.get("grant_type", "")
        message = pb.IssueTokenRequest(**{name: parameters.get(name, "") for name in _TOKEN_PARAMETERS})
        if grant_type == _CLIENT_CREDENTIALS:
            if not client.secret:
                raise oauth_params.invalid_client(
                    "the client_credentials grant needs client authentication: HTTP Basic with the API key "
                    "as client_id and its secret as client_secret",
                    self.oauth.realm,
                )
            message.client_id, message.client_secret = client.client_id, client.secret
        elif grant_type in _USER_GRANTS and client.secret:
            # Only API keys and services have secrets, and they use client_credentials; user grants
            # come from public clients (RFC 6749 §2.1), whose client_id is accepted and not checked.
            raise OAuthFailure(
                oauth_params.UNAUTHORIZED_CLIENT,
                f"a client with a secret may only use the client_credentials grant, not {grant_type}",
            )
        reply = await self._call("IssueToken", message, request, request_id, pb.IssueTokenResponse)
        return JSONResponse(token_response(reply))

    async def _revoke(self, request: Request, request_id: str) -> Response:
        # Client authentication is optional (public clients, RFC 7009 §2.1): a token is revocable by
        # whoever holds it, so credentials are checked for form and otherwise not needed.
        parameters, _client = await self._parameters(request)
        token = parameters.get("token", "")
        if not token:
            raise OAuthFailure(oauth_params.INVALID_REQUEST, "token is required")
        if self.oauth.unrevocable(token):
            raise OAuthFailure(
                oauth_params.UNSUPPORTED_TOKEN_TYPE,
                "API keys are not revoked here; revoke the key through its API key resource",
            )
        message = pb.RevokeTokenRequest(token=token, token_type_hint=parameters.get("token_type_hint", ""))
        await self._call("RevokeToken", message, request, request_id, pb.RevokeTokenResponse)
        return Response(b"", status_code=200)

    async def jwks(self, request: Request) -> Response:
        """The JWK Set, cacheable: ``Cache-Control: public, max-age``, an ``ETag`` and 304."""
        started = time.perf_counter()
        request_id = request_ids.for_request(request.headers.get("x-request-id"))
        if request.method not in ("GET", "HEAD"):
            status = EdgeError(grpc.StatusCode.UNIMPLEMENTED, f"{request.method} is not allowed here; use GET").status()
            response = _status_response(status, 405, {"Allow": "GET, HEAD", "Cache-Control": "no-store"})
        else:
            try:
                reply = await self._call("GetJwks", pb.GetJwksRequest(), request, request_id, pb.GetJwksResponse)
            except _UpstreamFailed as failed:
                headers = {**failed.headers, "Cache-Control": "no-store"}
                response = _status_response(failed.status, failed.grpc_http, headers)
            except EdgeError as error:
                response = _status_response(error.status(), error.http, {**error.headers, "Cache-Control": "no-store"})
            except Exception:
                incident = uuid.uuid4().hex[:16]
                log.exception("JWKS failure (incident %s)", incident)
                status = EdgeError(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})").status()
                response = _status_response(status, 500, {"Cache-Control": "no-store"})
            else:
                response = self._cacheable(request, responses.render_json(reply))
        response.headers["X-Request-Id"] = request_id
        code = _CODE_OF_HTTP.get(response.status_code, "INTERNAL") if response.status_code >= 400 else "OK"
        _observe(request, JWKS_PATH, response.status_code, time.perf_counter() - started, code)
        return response

    def _cacheable(self, request: Request, body: bytes) -> Response:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"Cache-Control": f"public, max-age={self.oauth.jwks_max_age}", "ETag": etag}
        wanted = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
        if etag in wanted or "*" in wanted:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=responses.JSON, headers=headers)  # the server drops it for HEAD

    async def _call(self, method: str, message: Any, request: Request, request_id: str, reply_type: Any) -> Any:
        upstream = self.upstreams.for_service(IDENTITY_SERVICE)
        if upstream is None:
            raise _UpstreamFailed(grpc.StatusCode.UNAVAILABLE, "identity is not configured", self.options.retry_after)
        callable_ = self._callables.get(method)
        if callable_ is None:
            callable_ = upstream.channel.unary_unary(
                f"/{IDENTITY_SERVICE}/{method}",
                request_serializer=type(message).SerializeToString,
                response_deserializer=reply_type.FromString,
            )
            self._callables[method] = callable_
        # The client's credentials travel in the message; a Basic header is not a credential for identity.
        metadata = [
            (k, v) for k, v in await upstream_metadata(request, self.options, request_id) if k not in _CREDENTIALS
        ]
        try:
            return await callable_(message, timeout=self.options.default_timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise _UpstreamFailed.of(error, self.options.retry_after) from None


class _AnyMethod:
    """An ASGI endpoint for a request handler; Starlette routes every method to it (it answers 405 itself)."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


class _UpstreamFailed(OAuthFailure):
    """A failed call to identity, as both an OAuth error and the ``google.rpc.Status`` it came with."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after: int, status: Any = None) -> None:
        self.status: status_pb2.Status = status or status_pb2.Status(code=code.value[0], message=message)
        info = _error_info(self.status)
        # The same rule as the transcoder's: the status's RetryInfo, else the edge's default.
        wait = str(retry_after_seconds(self.status) or retry_after)
        headers: dict[str, str] = {}
        oauth_error = info.metadata.get(OAUTH_ERROR_KEY, "") if info is not None else ""
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            error, http, headers = oauth_params.SLOW_DOWN, 429, {"Retry-After": wait}
        elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            # The channel's own text names internal addresses; the client needs only this.
            message = "the token service is temporarily unavailable; retry later"
            self.status.message = message
            error, http, headers = oauth_params.TEMPORARILY_UNAVAILABLE, 503, {"Retry-After": wait}
        elif oauth_error:
            error, http = oauth_error, 400
        elif code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            error, http = oauth_params.INVALID_REQUEST, 400
        elif code in _GRANT_REFUSED:
            error, http = "invalid_grant", 400
        else:
            error, http = oauth_params.SERVER_ERROR, 500
            if code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED):
                message = "the token service failed"
        if error == oauth_params.INVALID_CLIENT:
            http = 401  # the challenge is added with the realm by OAuthEndpoints
        super().__init__(error, message, http, headers)
        self.grpc_http = http_status(code)
        self.grpc_code = code.name

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError, retry_after: int) -> _UpstreamFailed:
        code = error.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.warning("identity unavailable for an OAuth endpoint: %s", code.name)
        status = status_from_rpc_error(error)
        return cls(code, status.message, retry_after, status)


# The gRPC code a metric records for an error the edge answers itself.
_CODE_OF_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}


# The identity method each OAuth endpoint calls, for the ``grpc_method`` label.
_GRPC_METHODS = {
    TOKEN_PATH: f"/{IDENTITY_SERVICE}/IssueToken",
    REVOKE_PATH: f"/{IDENTITY_SERVICE}/RevokeToken",
    JWKS_PATH: f"/{IDENTITY_SERVICE}/GetJwks",
}


def _observe(request: Request, route: str, status: int, seconds: float, code: str) -> None:
    metrics = getattr(request.app.state, "metrics", None) if "app" in request.scope else None
    if isinstance(metrics, EdgeMetrics):
        grpc_method = _GRPC_METHODS.get(route, "")
        metrics.observe(request.method, route, grpc_method, status, seconds, code or None)


def _error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def token_response(reply: pb.IssueTokenResponse) -> dict[str, Any]:
    """The RFC 6749 §5.1 JSON of an ``IssueTokenResponse``: empty optional members are left out."""
    body: dict[str, Any] = {
        "access_token": reply.access_token,
        "token_type": reply.token_type or "Bearer",
        "expires_in": reply.expires_in,
    }
    if reply.refresh_token:
        body["refresh_token"] = reply.refresh_token
        body["refresh_token_expires_in"] = reply.refresh_token_expires_in
    if reply.scope:
        body["scope"] = reply.scope
    if reply.organization_id:
        body["organization_id"] = reply.organization_id
    return body


def _error(failure: OAuthFailure) -> Response:
    body = {"error": failure.error, "error_description": failure.description}
    return JSONResponse(body, status_code=failure.http, headers=failure.headers)


def _status_response(status: status_pb2.Status, http: int, headers: dict[str, str]) -> Response:
    return Response(status_json(status), status_code=http, media_type=responses.JSON, headers=headers)
