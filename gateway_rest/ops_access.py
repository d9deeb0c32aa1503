"""Who may read the edge's operational pages (``/services``, ``/metrics``): platform principals.

Those pages name internal addresses and traffic, so in front of the mesh they need a
bearer token of a SUPER_ADMIN or a mesh service, verified against identity's JWKS like
any service would (signature, issuer, audience, lifetime). ``/health`` stays public for
probes. The edge does not follow revocations: a revoked platform token can read these
pages until it expires (at most the access-token lifetime).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from starlette.requests import Request
from starlette.responses import Response

from gateway_rest.errors import EdgeError, status_json
from mesh.tokens import InvalidToken, TokenVerifier

log = logging.getLogger(__name__)

OpsGuard = Callable[[Request], Awaitable[Response | None]]
_PLATFORM_ROLES = ("SUPER_ADMIN", "SERVICE")


def platform_guard(verifier: TokenVerifier) -> OpsGuard:
    """A guard answering 401 without a valid bearer token and 403 for one that is not a platform principal."""

    async def guard(request: Request) -> Response | None:
        values = request.headers.getlist("authorization")
        scheme, _, token = (values[0] if len(values) == 1 else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _refused(401, grpc.StatusCode.UNAUTHENTICATED, "a platform administrator's bearer token is required")
        try:
            claims = await verifier.verify(token.strip())
        except InvalidToken as error:
            log.info("operational page refused: %s", error.reason)
            return _refused(401, grpc.StatusCode.UNAUTHENTICATED, "invalid or missing credentials")
        if claims.role not in _PLATFORM_ROLES:
            return _refused(403, grpc.StatusCode.PERMISSION_DENIED, "only platform administrators may read this page")
        return None

    return guard


def _refused(status: int, code: grpc.StatusCode, message: str) -> Response:
    """A ``google.rpc.Status`` JSON error, like every other error of the edge."""
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body = status_json(EdgeError(code, message).status())
    return Response(body, status_code=status, media_type="application/json", headers=headers)
