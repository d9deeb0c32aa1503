"""The request side of the OAuth endpoints, without I/O: parameters and client authentication.

RFC 6749 §3.2 / RFC 7009 §2.1 requests are ``application/x-www-form-urlencoded``; the JSON
body the edge accepted before is kept for existing clients. Parameters sent without a value
count as omitted, a parameter sent twice is an ``invalid_request`` (§3.1), unknown ones are
ignored. A client authenticates (§2.3.1) with HTTP Basic, whose user name and password are
form-urlencoded before the base64, or with ``client_id`` / ``client_secret`` parameters;
never both.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

FORM = "application/x-www-form-urlencoded"
# RFC 6749 §5.2, RFC 7009 §2.2.1; ``slow_down`` (RFC 8628) and ``temporarily_unavailable`` are
# registered OAuth error codes this edge uses for 429 and 503.
INVALID_REQUEST = "invalid_request"
INVALID_CLIENT = "invalid_client"
UNAUTHORIZED_CLIENT = "unauthorized_client"
UNSUPPORTED_TOKEN_TYPE = "unsupported_token_type"
SLOW_DOWN = "slow_down"
TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
SERVER_ERROR = "server_error"


class OAuthFailure(Exception):
    """An OAuth error response (RFC 6749 §5.2).

    Attributes:
        error: the error code (``invalid_request`` …).
        description: ``error_description``, safe to show (never a secret).
        http: HTTP status.
        headers: extra response headers (``WWW-Authenticate``, ``Retry-After``, ``Allow``).

    """

    def __init__(self, error: str, description: str, http: int = 400, headers: Mapping[str, str] | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.http = http
        self.headers = dict(headers or {})


def invalid_client(description: str, realm: str) -> OAuthFailure:
    """``invalid_client``: 401 with the Basic challenge (RFC 6749 §5.2)."""
    return OAuthFailure(INVALID_CLIENT, description, 401, {"WWW-Authenticate": f'Basic realm="{realm}"'})


def parse_parameters(body: bytes, content_type: str) -> dict[str, str]:
    """The request parameters of a form or JSON body; empty values are left out.

    A body without a Content-Type is read as a form when empty and as JSON otherwise
    (what JSON clients of the edge sent before).

    Raises:
        OAuthFailure: ``invalid_request`` for a malformed body or a repeated parameter; 415
            for another media type.

    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == FORM or (not media and not body.strip()):
        return _form(body)
    if media in ("", "application/json") or media.endswith("+json"):
        return _json(body)
    raise OAuthFailure(INVALID_REQUEST, f"send the parameters as {FORM} (or application/json)", 415)


def _form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise OAuthFailure(INVALID_REQUEST, "the form body is not UTF-8 application/x-www-form-urlencoded") from None
    return _unique(pairs)


def _json(body: bytes) -> dict[str, str]:
    def pairs_hook(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        if len(names) != len(set(names)):
            raise OAuthFailure(INVALID_REQUEST, "a parameter appears more than once")
        return dict(pairs)

    try:
        document = json.loads(body, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        raise OAuthFailure(INVALID_REQUEST, "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise OAuthFailure(INVALID_REQUEST, "the JSON body must be an object of parameters")
    parameters: dict[str, str] = {}
    for name, value in document.items():
        if isinstance(value, str):
            if value:
                parameters[name] = value
        elif value is not None and name in _KNOWN:
            raise OAuthFailure(INVALID_REQUEST, f"{name} must be a string")
    return parameters


# Parameters the endpoints read; other members of a JSON body are ignored whatever their type.
_KNOWN = frozenset(
    {
        "grant_type",
        "username",
        "password",
        "refresh_token",
        "client_id",
        "client_secret",
        "scope",
        "organization_id",
        "token",
        "token_type_hint",
    }
)


def _unique(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise OAuthFailure(INVALID_REQUEST, f"the parameter {name[:64]} appears more than once")
        seen.add(name)
        if value:
            parameters[name] = value
    return parameters


@dataclasses.dataclass(frozen=True, slots=True)
class ClientAuth:
    """How the client identified itself.

    Attributes:
        client_id: the client identifier (``""`` when none was given).
        secret: the client secret (``""`` for a public client).
        basic: it came in an HTTP Basic ``Authorization`` header.

    """

    client_id: str = ""
    secret: str = dataclasses.field(default="", repr=False)
    basic: bool = False


def client_auth(authorizations: Sequence[str], parameters: Mapping[str, str], realm: str) -> ClientAuth:
    """The client's authentication from the ``Authorization`` headers and the parameters.

    Raises:
        OAuthFailure: ``invalid_request`` for two headers or two methods at once (§2.3: a
            client uses one method per request), ``invalid_client`` (401) for a malformed
            Basic header or another scheme.

    """
    body_id, body_secret = parameters.get("client_id", ""), parameters.get("client_secret", "")
    if not authorizations:
        return ClientAuth(body_id, body_secret)
    if len(authorizations) > 1:
        raise OAuthFailure(INVALID_REQUEST, "send one Authorization header")
    client_id, secret = parse_basic(authorizations[0], realm)
    if body_secret:
        raise OAuthFailure(
            INVALID_REQUEST,
            "use one client authentication method: HTTP Basic or the client_id and client_secret parameters",
        )
    if body_id and body_id != client_id:
        raise OAuthFailure(INVALID_REQUEST, "the client_id parameter names another client than HTTP Basic")
    return ClientAuth(client_id, secret, basic=True)


def parse_basic(header: str, realm: str) -> tuple[str, str]:
    """``(client_id, client_secret)`` of an ``Authorization: Basic`` value (RFC 6749 §2.3.1, RFC 7617).

    Both halves are form-urldecoded after the base64, as §2.3.1 requires; a client that
    did not encode them still works as long as they hold no ``%`` or ``+``.

    Raises:
        OAuthFailure: ``invalid_client`` for another scheme or a malformed value.

    """
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise invalid_client("authenticate the client with HTTP Basic or the client_id/client_secret parameters", realm)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid_client("the Basic credentials are not base64 of client_id:client_secret", realm) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise invalid_client("the Basic credentials are not base64 of client_id:client_secret", realm)
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
