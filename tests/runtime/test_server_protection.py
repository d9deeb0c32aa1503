"""The protection wrappers are wired into every ServiceHost: a rate limit reaches REST as 429 + Retry-After."""

from __future__ import annotations

import dataclasses

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.config import Settings
from mesh.limits.rates import Rate
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer

ISSUER = TestIssuer()
TOKEN = ISSUER.mint(subject="users/alice", org="org_a", role="ADMIN")


async def test_a_principal_past_its_read_budget_gets_429_with_retry_after_and_the_quota(sqlite_settings: Settings):
    settings = dataclasses.replace(sqlite_settings, rate_limit_read=Rate(0.01, 2))
    async with (
        running_services(settings, ["agents"], issuer=ISSUER, edge=True) as mesh,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge_port}", timeout=30) as http,
    ):
        headers = {"authorization": f"Bearer {TOKEN}"}
        for _ in range(2):
            assert (await http.get("/v1/organizations/org_a/agents", headers=headers)).status_code == 200
        limited = await http.get("/v1/organizations/org_a/agents", headers=headers)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 100
        body = limited.json()
        assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        kinds = {detail["@type"].rsplit(".", 1)[-1]: detail for detail in body["details"]}
        assert set(kinds) == {"RetryInfo", "QuotaFailure"}
        assert kinds["QuotaFailure"]["violations"][0]["subject"] == "users/alice"
        # Writes have their own bucket; health is never limited.
        created = await http.post("/v1/organizations/org_a/agents", json={"displayName": "Desk"}, headers=headers)
        assert created.status_code == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['agents']}") as channel:
            for _ in range(5):
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert health.status == health_pb2.HealthCheckResponse.SERVING
