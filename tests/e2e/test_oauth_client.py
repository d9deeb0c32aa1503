"""A standard OAuth 2.0 client library (authlib's httpx client), with no custom code, against the real mesh.

Identity, team_hub, developer_api and agents run in-process with the real edge in front
(tests/support/mesh.py). Only the sign-up and the API key's creation use plain HTTP; every
token is obtained, refreshed and revoked by authlib exactly as it talks to any RFC 6749 /
RFC 7009 server: form bodies, HTTP Basic for a confidential client (an API key), a client_id
in the body for a public one. A revoked token is refused by the next API call, everywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from mesh.config import Settings
from tests.support.mesh import running_services

PASSWORD = "correct horse battery staple"
PUBLIC_CLIENT = "vocelio-example-app"


async def _refused_within(client: httpx.AsyncClient, path: str, token: str, limit: float = 10.0) -> bool:
    """Whether a call with ``token`` turns 401 within ``limit`` seconds (revocations travel by stream)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if (await client.get(path, headers={"Authorization": f"Bearer {token}"})).status_code == 401:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def edge(settings: Settings):
    """The four services on each database backend, with the edge."""
    slower = dataclasses.replace(settings, health_probe_interval=2.0, health_probe_timeout=2.0)
    names = ["identity", "team_hub", "developer_api", "agents"]
    async with running_services(slower, names, edge=True) as mesh:
        yield f"http://127.0.0.1:{mesh.edge_port}"


async def test_an_oauth_client_library_obtains_refreshes_and_revokes_tokens(edge: str):
    token_url, revoke_url = f"{edge}/v1/auth/token", f"{edge}/v1/auth/revoke"
    async with httpx.AsyncClient(base_url=edge, timeout=15) as plain:
        signed_up = await plain.post(
            "/v1/auth/signup",
            json={
                "email": "ada@example.com",
                "password": PASSWORD,
                "displayName": "Ada",
                "organizationDisplayName": "Acme",
                "termsAccepted": True,
            },
        )
        assert signed_up.status_code == 200, signed_up.text
        org = signed_up.json()["organizationId"]

        # A user: the password grant from a public client, then refresh and revoke.
        async with AsyncOAuth2Client(client_id=PUBLIC_CLIENT, token_endpoint=token_url, timeout=15) as user:
            token = await user.fetch_token(token_url, username="ada@example.com", password=PASSWORD)
            assert token["token_type"] == "Bearer"
            assert 0 < token["expires_in"] <= 900
            first_access, first_refresh = token["access_token"], token["refresh_token"]
            assert (await user.get(f"{edge}/v1/users/me")).status_code == 200

            refreshed = await user.refresh_token(token_url)
            assert refreshed["access_token"] != first_access
            assert refreshed["refresh_token"] != first_refresh
            assert (await user.get(f"{edge}/v1/organizations/{org}/agents")).status_code == 200

            created = await user.post(
                f"{edge}/v1/organizations/{org}/api_keys",
                json={"displayName": "CI", "scopes": ["agents.list"], "environment": "API_KEY_ENVIRONMENT_LIVE"},
            )
            assert created.status_code == 200, created.text
            key_name, key_secret = created.json()["apiKey"]["name"], created.json()["secret"]

            access = user.token["access_token"]
            revoked = await user.revoke_token(revoke_url, token=access, token_type_hint="access_token")
            assert revoked.status_code == 200
            assert await _refused_within(plain, "/v1/users/me", access)
            assert await _refused_within(plain, f"/v1/organizations/{org}/agents", access)

            # Revoking the refresh token ends the session: the library's next refresh is refused.
            await user.revoke_token(revoke_url, token=user.token["refresh_token"], token_type_hint="refresh_token")
            with pytest.raises(OAuthError) as refused:
                await user.refresh_token(token_url)
            assert refused.value.error == "invalid_grant"

        # An API key: the client_credentials grant, the key as a confidential client over HTTP Basic.
        async with AsyncOAuth2Client(client_id=key_name, client_secret=key_secret, timeout=15) as machine:
            assert machine.token_endpoint_auth_method == "client_secret_basic"
            key_token = await machine.fetch_token(token_url, grant_type="client_credentials")
            assert key_token["scope"] == "agents.list"
            assert "refresh_token" not in key_token
            listed = await machine.get(f"{edge}/v1/organizations/{org}/agents")
            assert listed.status_code == 200, listed.text
            assert (await machine.revoke_token(revoke_url, token=key_token["access_token"])).status_code == 200
            assert await _refused_within(plain, f"/v1/organizations/{org}/agents", key_token["access_token"])

        # A wrong secret is the library's OAuthError too, with the RFC code.
        # Another last character (a secret ending in "x" made "wrong" the right one, 1 run in 64).
        wrong_secret = key_secret[:-1] + ("y" if key_secret.endswith("x") else "x")
        async with AsyncOAuth2Client(client_id=key_name, client_secret=wrong_secret, timeout=15) as wrong:
            with pytest.raises(OAuthError) as bad_client:
                await wrong.fetch_token(token_url, grant_type="client_credentials")
            assert bad_client.value.error == "invalid_client"
