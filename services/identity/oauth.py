"""OAuth 2.0 grant rules without I/O: error codes (RFC 6749 §5.2), scopes and access-token claims (RFC 9068)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from mesh.errors import ErrorReasons, ResourceExhausted, VocelioError
from mesh.restrictions import CLAIM as RESTRICTIONS_CLAIM
from mesh.restrictions import NO_RESTRICTIONS, KeyRestrictions
from vocelio.identity.v1 import identity_errors_pb2

# ErrorInfo.reason is the identity ErrorReason value (INVALID_GRANT); the RFC 6749 code the
# protocol mandates (invalid_grant) travels beside it in ErrorInfo.metadata["oauth_error"].
REASONS = ErrorReasons(identity_errors_pb2.ErrorReason)
ERROR_DOMAIN = REASONS.domain
OAUTH_ERROR_KEY = "oauth_error"

GRANT_PASSWORD = "password"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TYPES = (GRANT_PASSWORD, GRANT_REFRESH_TOKEN, GRANT_CLIENT_CREDENTIALS)

# RFC 6749 §5.2 error codes, and the one Vocelio adds for a locked account.
INVALID_REQUEST = "invalid_request"
INVALID_CLIENT = "invalid_client"
INVALID_GRANT = "invalid_grant"
UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
INVALID_SCOPE = "invalid_scope"
ACCOUNT_LOCKED = "account_locked"

_UNAUTHENTICATED_CODES = (INVALID_CLIENT, INVALID_GRANT, ACCOUNT_LOCKED)
_REASON_OF_CODE = {
    INVALID_REQUEST: identity_errors_pb2.ERROR_REASON_INVALID_REQUEST,
    INVALID_CLIENT: identity_errors_pb2.ERROR_REASON_INVALID_CLIENT,
    INVALID_GRANT: identity_errors_pb2.ERROR_REASON_INVALID_GRANT,
    UNSUPPORTED_GRANT_TYPE: identity_errors_pb2.ERROR_REASON_UNSUPPORTED_GRANT_TYPE,
    INVALID_SCOPE: identity_errors_pb2.ERROR_REASON_INVALID_SCOPE,
    ACCOUNT_LOCKED: identity_errors_pb2.ERROR_REASON_ACCOUNT_LOCKED,
}

# The one message for every failed password check, whatever the cause (RFC 6749 §10.x:
# no account enumeration).
BAD_CREDENTIALS = "the e-mail address or the password is wrong"


class OAuthError(VocelioError):
    """A failed grant, carrying its RFC 6749 error code.

    Its ``google.rpc.ErrorInfo`` has the identity ``ErrorReason`` as reason (``INVALID_GRANT``)
    and the RFC code in ``metadata["oauth_error"]`` (``invalid_grant``).

    Attributes:
        reason: the RFC error code (``invalid_grant`` …).
        metadata: extra ErrorInfo metadata (``locked_until`` …), never secrets.

    """

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.code = (
            grpc.StatusCode.UNAUTHENTICATED if reason in _UNAUTHENTICATED_CODES else grpc.StatusCode.INVALID_ARGUMENT
        )
        self.with_reason(REASONS, _REASON_OF_CODE[reason], {OAUTH_ERROR_KEY: reason, **self.metadata})


class RateLimited(ResourceExhausted):
    """Too many attempts; the caller should wait ``retry_after`` seconds.

    Attributes:
        retry_after: seconds until the next attempt may succeed.
        limit: which limit ran out (``per_account``, ``per_address`` or ``password_hashing``).

    """

    def __init__(self, retry_after: float, limit: str, message: str = "") -> None:
        super().__init__(message or f"too many sign-in attempts; try again in {max(1, math.ceil(retry_after))} s")
        self.retry_after = retry_after
        self.limit = limit
        self.with_reason(REASONS, identity_errors_pb2.ERROR_REASON_RATE_LIMITED, {"limit": limit})


def account_locked(until: dt.datetime) -> OAuthError:
    """The error for a password grant on a locked account."""
    text = until.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return OAuthError(ACCOUNT_LOCKED, f"account locked until {text}", {"locked_until": text})


def check_grant_type(grant_type: str) -> str:
    """The grant type, checked.

    Raises:
        OAuthError: missing (``invalid_request``) or unknown (``unsupported_grant_type``).

    """
    if not grant_type:
        raise OAuthError(INVALID_REQUEST, "grant_type is required")
    if grant_type not in GRANT_TYPES:
        raise OAuthError(
            UNSUPPORTED_GRANT_TYPE,
            f"grant_type {grant_type[:64]!r} is not supported; use one of {', '.join(GRANT_TYPES)}",
        )
    return grant_type


def require(value: str, name: str, grant_type: str) -> str:
    """A parameter the grant needs.

    Raises:
        OAuthError: ``invalid_request`` when it is empty.

    """
    if not value:
        raise OAuthError(INVALID_REQUEST, f"{name} is required for the {grant_type} grant")
    return value


def split_scope(scope: str) -> tuple[str, ...]:
    """The permissions of a space-separated scope string, in order, without duplicates."""
    return tuple(dict.fromkeys(s for s in scope.split(" ") if s))


def narrow_scopes(requested: str, allowed: Iterable[str], known: Iterable[str]) -> tuple[str, ...]:
    """The scopes a token gets when the client asks for ``requested``.

    ``allowed`` is what the grant allows (``"*"`` = every ``known`` permission). An empty
    request gives ``()`` for user grants, meaning "what the role allows".

    Raises:
        OAuthError: ``invalid_scope`` when a requested permission is not allowed.

    """
    wanted = split_scope(requested)
    allowed_set = frozenset(allowed)
    known_set = frozenset(known)
    outside = [s for s in wanted if not ((s in known_set and "*" in allowed_set) or s in allowed_set)]
    if outside:
        raise OAuthError(INVALID_SCOPE, f"the grant does not allow the scope {' '.join(outside)[:200]}")
    return wanted


@dataclasses.dataclass(frozen=True, slots=True)
class GrantRequest:
    """The parameters of an access-token request (RFC 6749 names)."""

    grant_type: str
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    refresh_token: str = dataclasses.field(default="", repr=False)
    client_id: str = ""
    client_secret: str = dataclasses.field(default="", repr=False)
    scope: str = ""
    organization_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """An access-token response (RFC 6749 §5.1)."""

    access_token: str = dataclasses.field(repr=False)
    expires_in: int
    organization_id: str
    scopes: tuple[str, ...] = ()
    refresh_token: str = dataclasses.field(default="", repr=False)
    refresh_expires_in: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class TokenSubject:
    """Whom an access token is for.

    Attributes:
        subject: ``users/…``, ``organizations/…/api_keys/…`` or ``services/…``.
        organization_id: the ``org`` claim (``""`` for services and platform scope).
        role: the ``role`` claim (``""`` for API keys).
        scopes: the ``scope`` claim; empty leaves it out.
        session_id: the ``sid`` claim (``sessions/…``), users only.
        client_id: the ``client_id`` claim, client_credentials only.
        restrictions: an API key's IP ranges, origins and agents (the ``vocelio_restrictions``
            claim), so a token minted from a key obeys the key's limits.

    """

    subject: str
    organization_id: str
    role: str
    scopes: tuple[str, ...] = ()
    session_id: str = ""
    client_id: str = ""
    restrictions: KeyRestrictions = NO_RESTRICTIONS


def access_claims(
    who: TokenSubject,
    *,
    issuer: str,
    audience: str,
    issued_at: int,
    lifetime: int,
    not_after: dt.datetime | None = None,
    token_id: str | None = None,
) -> dict[str, Any]:
    """The claims of an RFC 9068 access token.

    ``exp`` is ``issued_at + lifetime``, or ``not_after`` when that is sooner (an API key
    that expires earlier).
    """
    expires = issued_at + lifetime
    if not_after is not None:
        expires = min(expires, int(not_after.timestamp()))
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": who.subject,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires,
        "jti": token_id or secrets.token_urlsafe(16),
        "org": who.organization_id,
        "role": who.role,
    }
    if who.session_id:
        claims["sid"] = who.session_id
    if who.scopes:
        claims["scope"] = " ".join(who.scopes)
    if who.client_id:
        claims["client_id"] = who.client_id
    if restrictions := who.restrictions.to_claim():
        claims[RESTRICTIONS_CLAIM] = restrictions
    return claims
