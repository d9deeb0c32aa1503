"""What the OpenAPI document says about the OAuth endpoints (:mod:`gateway_rest.oauth`).

The transcoder's description of ``IssueToken`` / ``RevokeToken`` (a ProtoJSON body,
``google.rpc.Status`` errors) is not what the fixed routes in front of it do, so the two
operations are rewritten here: form (or JSON) parameters, the RFC 6749 §5.1 token response,
§5.2 error objects, ``Cache-Control: no-store``. The JWKS operation gains its cache headers
and 304, and ``components.securitySchemes`` an ``oauth2`` scheme naming the token URL.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway_rest.oauth import JWKS_PATH, REVOKE_PATH, TOKEN_PATH

SCHEMAS = "#/components/schemas/"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

_TEXT: dict[str, Any] = {"type": "string"}

TOKEN_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": "RFC 6749 §4.3 / §6 / §4.4 token request parameters. Client authentication by HTTP Basic "
    "(preferred) or by `client_id` and `client_secret`, never both.",
    "properties": {
        "grant_type": {
            "type": "string",
            "description": "`password`, `refresh_token` or `client_credentials`.",
            "examples": ["password"],
        },
        "username": {**_TEXT, "description": "password grant: the user's e-mail address."},
        "password": {**_TEXT, "description": "password grant: the user's password.", "format": "password"},
        "refresh_token": {**_TEXT, "description": "refresh_token grant: the refresh token (used up by the call)."},
        "scope": {**_TEXT, "description": "Space-separated permissions to narrow the token to."},
        "organization_id": {**_TEXT, "description": "User grants: the organisation to issue the token for."},
        "client_id": {
            **_TEXT,
            "description": "client_credentials: the API key's resource name or visible prefix (when not sent by "
            "HTTP Basic). User grants: any public client identifier, not checked.",
        },
        "client_secret": {
            **_TEXT,
            "description": "client_credentials: the API key's secret (when not sent by HTTP Basic).",
            "format": "password",
        },
    },
    "required": ["grant_type"],
}

REVOCATION_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": "RFC 7009 §2.1 revocation request parameters.",
    "properties": {
        "token": {**_TEXT, "description": "The access or refresh token to revoke."},
        "token_type_hint": {**_TEXT, "description": "`access_token` or `refresh_token`; a hint only."},
        "client_id": {**_TEXT, "description": "Optional; revocation needs no client authentication."},
        "client_secret": {**_TEXT, "description": "Optional; never together with HTTP Basic.", "format": "password"},
    },
    "required": ["token"],
}

TOKEN_RESPONSE: dict[str, Any] = {
    "type": "object",
    "description": "RFC 6749 §5.1 access token response.",
    "properties": {
        "access_token": {**_TEXT, "description": "The access token, a signed JWT (RFC 9068)."},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer", "description": "Lifetime of the access token in seconds."},
        "refresh_token": {**_TEXT, "description": "Single-use refresh token; not issued for client_credentials."},
        "refresh_token_expires_in": {"type": "integer", "description": "Seconds until the session ends."},
        "scope": {**_TEXT, "description": "Granted permissions, when the token is narrowed to some."},
        "organization_id": {**_TEXT, "description": "Organisation the token is for. Vocelio extension."},
    },
    "required": ["access_token", "token_type", "expires_in"],
}

ERROR: dict[str, Any] = {
    "type": "object",
    "description": "RFC 6749 §5.2 / RFC 7009 §2.2.1 error response.",
    "properties": {
        "error": {
            **_TEXT,
            "description": "invalid_request, invalid_client, invalid_grant, unauthorized_client, "
            "unsupported_grant_type, invalid_scope, unsupported_token_type; account_locked (Vocelio), "
            "slow_down (429), temporarily_unavailable (503), server_error (500).",
        },
        "error_description": {**_TEXT, "description": "Human-readable explanation; never contains a secret."},
    },
    "required": ["error"],
}

_NO_STORE_HEADERS: dict[str, Any] = {
    "Cache-Control": {"description": "Always `no-store`.", "schema": {"type": "string"}},
    "Pragma": {"description": "Always `no-cache`.", "schema": {"type": "string"}},
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
_CHALLENGE = {"WWW-Authenticate": {"description": 'Basic realm="vocelio".', "schema": {"type": "string"}}}

_ERRORS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("400", "The request or the grant was refused (invalid_request, invalid_grant, …).", {}),
    ("401", "Client authentication failed (invalid_client).", _CHALLENGE),
    ("405", "Only POST is allowed.", {"Allow": {"schema": {"type": "string"}}}),
    ("413", "The body is too large.", {}),
    ("415", "The body is neither a form nor JSON.", {}),
    ("429", "Too many attempts (slow_down).", _RETRY_AFTER),
    ("500", "The token service failed (server_error).", {}),
    ("503", "The token service is unavailable (temporarily_unavailable).", _RETRY_AFTER),
)


def _body(schema_name: str) -> dict[str, Any]:
    schema = {"$ref": SCHEMAS + schema_name}
    return {"required": True, "content": {FORM: {"schema": schema}, JSON: {"schema": schema}}}


def _responses(success: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {"200": success}
    error = {JSON: {"schema": {"$ref": SCHEMAS + "OAuthError"}}}
    for code, description, headers in _ERRORS:
        answers[code] = {"description": description, "headers": {**_NO_STORE_HEADERS, **headers}, "content": error}
    answers["default"] = {"description": "Another OAuth error.", "headers": _NO_STORE_HEADERS, "content": error}
    return answers


def describe_oauth(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the token, revocation and JWKS operations as the edge serves them."""
    document = copy.deepcopy(document)
    paths = document.get("paths", {})
    token = paths.get(TOKEN_PATH, {}).get("post")
    if token is not None:
        token["description"] = (
            "The OAuth 2.0 token endpoint (RFC 6749). Grants: `password` (a user), `refresh_token` (rotates the "
            "refresh token), `client_credentials` (an API key as the client, by HTTP Basic). Every response has "
            "`Cache-Control: no-store`; errors are RFC 6749 §5.2 objects. See docs/OAUTH.md."
        )
        token["requestBody"] = _body("OAuthTokenRequest")
        token["responses"] = _responses(
            {
                "description": "An access token.",
                "headers": _NO_STORE_HEADERS,
                "content": {JSON: {"schema": {"$ref": SCHEMAS + "OAuthTokenResponse"}}},
            }
        )
    revoke = paths.get(REVOKE_PATH, {}).get("post")
    if revoke is not None:
        revoke["description"] = (
            "The OAuth 2.0 revocation endpoint (RFC 7009). Revoking a refresh token ends its session. An unknown, "
            "expired or already revoked token also gets 200; an API key secret gets `unsupported_token_type`."
        )
        revoke["requestBody"] = _body("OAuthRevocationRequest")
        revoke["responses"] = _responses(
            {"description": "Revoked (or nothing to revoke); the body is empty.", "headers": _NO_STORE_HEADERS}
        )
    jwks = paths.get(JWKS_PATH, {}).get("get")
    if jwks is not None and "200" in jwks.get("responses", {}):
        jwks["parameters"] = [
            {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
        ]
        jwks["responses"]["200"]["headers"] = {
            "Cache-Control": {"description": "`public, max-age=…`.", "schema": {"type": "string"}},
            "ETag": {"description": "Tag of this key set.", "schema": {"type": "string"}},
        }
        jwks["responses"]["304"] = {"description": "The key set is unchanged since the ETag in `If-None-Match`."}
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["OAuthTokenRequest"] = TOKEN_REQUEST
    schemas["OAuthRevocationRequest"] = REVOCATION_REQUEST
    schemas["OAuthTokenResponse"] = TOKEN_RESPONSE
    schemas["OAuthError"] = ERROR
    components.setdefault("securitySchemes", {})["oauth2"] = {
        "type": "oauth2",
        "description": "Obtain a bearer token from the token endpoint; send it as `Authorization: Bearer`.",
        "flows": {
            "password": {"tokenUrl": TOKEN_PATH, "refreshUrl": TOKEN_PATH, "scopes": {}},
            "clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": {}},
        },
    }
    return copy.deepcopy(document)
