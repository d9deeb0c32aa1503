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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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
            return _refused(401, "UNAUTHENTICATED", "a platform administrator's bearer token is required")
        try:
            claims = await verifier.verify(token.strip())
        except InvalidToken as error:
            log.info("operational page refused: %s", error.reason)
            return _refused(401, "UNAUTHENTICATED", "invalid or missing credentials")
        if claims.role not in _PLATFORM_ROLES:
            return _refused(403, "PERMISSION_DENIED", "only platform administrators may read this page")
        return None

    return guard


def _refused(status: int, code: str, message: str) -> Response:
    # google.rpc.Status JSON, like every other error of the edge
    numeric = {"UNAUTHENTICATED": 16, "PERMISSION_DENIED": 7}[code]
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"code": numeric, "message": message, "details": []}, status_code=status, headers=headers)
