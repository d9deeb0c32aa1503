"""Tokens minted from an API key carry the key's restrictions (the ``vocelio_restrictions`` claim)."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf import timestamp_pb2

from mesh.restrictions import CLAIM, KeyRestrictions
from tests.services.identity.conftest import Harness, claims_of, oauth_error, pb
from vocelio.developer_api.v1 import api_key_pb2, developer_api_service_pb2


async def test_a_token_minted_from_a_key_carries_its_ip_ranges_origins_and_agents(harness: Harness):
    harness.developer_api.keys["vk_live_limited"] = developer_api_service_pb2.VerifyApiKeyResponse(
        api_key="organizations/org_9/api_keys/k_1",
        organization_id="org_9",
        scopes=["agents.get"],
        display_name="kiosk",
        restrictions=api_key_pb2.ApiKeyRestrictions(
            allowed_ip_ranges=["203.0.113.0/24"],
            allowed_origins=["https://app.example.com"],
            allowed_agents=["organizations/org_9/agents/front-desk"],
        ),
    )
    reply = await harness.anonymous.IssueToken(
        pb.IssueTokenRequest(grant_type="client_credentials", client_secret="vk_live_limited")
    )
    assert claims_of(reply.access_token)[CLAIM] == {
        "ip": ["203.0.113.0/24"],
        "origin": ["https://app.example.com"],
        "agents": ["organizations/org_9/agents/front-desk"],
    }
    claims = await harness.verify(reply.access_token)
    assert claims.restrictions == KeyRestrictions(
        ip_ranges=("203.0.113.0/24",),
        origins=("https://app.example.com",),
        agents=("organizations/org_9/agents/front-desk",),
    )


async def test_a_token_minted_from_an_unrestricted_key_has_no_restrictions_claim(harness: Harness):
    harness.developer_api.keys["vk_live_open"] = developer_api_service_pb2.VerifyApiKeyResponse(
        api_key="organizations/org_9/api_keys/k_2", organization_id="org_9", scopes=["agents.get"]
    )
    reply = await harness.anonymous.IssueToken(
        pb.IssueTokenRequest(grant_type="client_credentials", client_secret="vk_live_open")
    )
    assert CLAIM not in claims_of(reply.access_token)


async def test_an_expired_key_mints_nothing(harness: Harness):
    expired = timestamp_pb2.Timestamp()
    expired.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    harness.developer_api.keys["vk_live_expired"] = developer_api_service_pb2.VerifyApiKeyResponse(
        api_key="organizations/org_9/api_keys/k_3", organization_id="org_9", scopes=["agents.get"], expire_time=expired
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.anonymous.IssueToken(
            pb.IssueTokenRequest(grant_type="client_credentials", client_secret="vk_live_expired")
        )
    assert oauth_error(caught.value) == "invalid_client"
