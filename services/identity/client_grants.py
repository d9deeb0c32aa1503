"""IssueToken's client_credentials grant (RFC 6749 §4.4): mesh services and API keys.

A service authenticates with ``client_id = services/<name>`` and the mesh's shared
service secret; anything else is an API key whose secret developer_api verifies. Neither
gets a refresh token. Failed attempts are audited and limited per client address.
"""

from __future__ import annotations

import hmac

from mesh.kit.caller import CallerInfo
from services.identity import audit, oauth
from services.identity.app import Identity
from services.identity.oauth import Grant, GrantRequest, OAuthError, RateLimited, TokenSubject


async def client_credentials_grant(app: Identity, request: GrantRequest, info: CallerInfo) -> Grant:
    """The client_credentials grant: a mesh service with the service secret, or an API key."""
    secret = oauth.require(request.client_secret, "client_secret", oauth.GRANT_CLIENT_CREDENTIALS)
    if request.client_id.startswith("services/"):
        return await _service_grant(app, request, secret, info)
    # Checked before asking developer_api, so a flood of bad keys does not become a flood of calls.
    _check_failures(app, info)
    return await _api_key_grant(app, request, secret, info)


def _check_failures(app: Identity, info: CallerInfo) -> None:
    wait = app.client_failures.wait_time(info.client_address or "unknown")
    if wait:
        raise RateLimited(wait, "per_address")


async def _client_failed(app: Identity, info: CallerInfo, actor: audit.Actor, failure: str) -> OAuthError:
    # Many services share an address: failures from a misconfigured one must not lock the others out, so
    # only failures count, and a right secret always works. The secrets are 256-bit random: the limit
    # bounds noise and load, not guessing.
    _check_failures(app, info)
    app.client_failures.take(info.client_address or "unknown")
    async with app.transaction() as session:
        await app.record(
            session,
            action="SIGN_IN_FAILED",
            outcome=audit.FAILURE,
            actor=actor,
            request=info,
            target=actor.principal,
            details={"failure": failure, "grant_type": oauth.GRANT_CLIENT_CREDENTIALS},
        )
    return OAuthError(oauth.INVALID_CLIENT, "client authentication failed")


async def _service_grant(app: Identity, request: GrantRequest, secret: str, info: CallerInfo) -> Grant:
    name = request.client_id.removeprefix("services/")
    matches = hmac.compare_digest(secret.encode(), app.settings.mesh_service_secret().encode())
    known = any(spec.name == name for spec in app.registry)
    if not (matches and known):
        actor = audit.Actor(request.client_id[:100], "SERVICE", name[:64])
        raise await _client_failed(app, info, actor, "bad_client_secret" if known else "unknown_service")
    scopes = oauth.narrow_scopes(request.scope, {"*"}, app.access.all_permissions)
    issued = await app.mint(None, TokenSubject(request.client_id, "", "SERVICE", scopes, client_id=request.client_id))
    return Grant(access_token=issued.token, expires_in=issued.expires_in, organization_id="", scopes=scopes)


async def _api_key_grant(app: Identity, request: GrantRequest, secret: str, info: CallerInfo) -> Grant:
    key = await app.directory.verify_api_key(secret, info.client_address)
    client_id = request.client_id
    now = app.clock()
    if (
        key is None
        or (client_id and client_id != key.api_key and not secret.startswith(client_id))
        or (key.expire_time is not None and key.expire_time <= now)
    ):
        actor = audit.Actor(
            key.api_key if key else "", "API_KEY" if key else "ANONYMOUS", key.display_name if key else ""
        )
        raise await _client_failed(app, info, actor, "bad_api_key")
    scopes = oauth.narrow_scopes(request.scope, key.scopes, app.access.all_permissions) or key.scopes
    # The key's IP ranges, origins and agents travel as a claim, so the token obeys them on every call.
    who = TokenSubject(
        key.api_key, key.organization_id, "", scopes, client_id=key.api_key, restrictions=key.restrictions
    )
    async with app.transaction() as session:
        issued = await app.mint(session, who, not_after=key.expire_time)
        await app.record(
            session,
            action="CLIENT_TOKEN_ISSUED",
            actor=audit.Actor(key.api_key, "API_KEY", key.display_name),
            request=info,
            organization_id=key.organization_id,
            target=key.api_key,
            details={"scopes": " ".join(scopes)[:1024]},
        )
    return Grant(
        access_token=issued.token, expires_in=issued.expires_in, organization_id=key.organization_id, scopes=scopes
    )
