"""``/services`` and ``/metrics`` need a platform principal's token; ``/health`` stays public."""

from __future__ import annotations

import httpx
import pytest

from gateway_rest.app import create_app
from gateway_rest.ops_access import platform_guard
from gateway_rest.upstreams import Upstream, Upstreams
from mesh.jwks import StaticKeys
from mesh.tokens import TokenVerifier
from tests.support.edge import serve_app
from tests.support.tokens import AUDIENCE, ISSUER, TestIssuer

TOKENS = TestIssuer()


@pytest.fixture
async def edge():
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=StaticKeys(TOKENS.jwks))
    nowhere = Upstream(
        name="agents", title="Agents", address="127.0.0.1:1", services=("vocelio.agents.v1.AgentsService",)
    )
    app = create_app(Upstreams([nowhere]), ops_guard=platform_guard(verifier), health_timeout=0.5)
    async with serve_app(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/services", "/metrics"])
async def test_operational_pages_refuse_anyone_but_a_platform_principal(edge: httpx.AsyncClient, path: str):
    anonymous = await edge.get(path)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["code"] == 16
    assert "127.0.0.1:1" not in anonymous.text
    assert (await edge.get(path, headers=_bearer("not-a-token"))).status_code == 401
    assert (await edge.get(path, headers=_bearer(TOKENS.mint(role="ADMIN")))).status_code == 403
    forged = TestIssuer().mint(role="SUPER_ADMIN", org="")  # another key
    assert (await edge.get(path, headers=_bearer(forged))).status_code == 401
    for platform in (TOKENS.mint(role="SUPER_ADMIN", org=""), TOKENS.mint_service("agents")):
        allowed = await edge.get(path, headers=_bearer(platform))
        assert allowed.status_code == 200, allowed.text


async def test_health_stays_public_for_probes(edge: httpx.AsyncClient):
    health = await edge.get("/health")
    assert health.status_code == 503  # the upstream is unreachable, and it says so without a token
    assert health.json()["status"] == "NOT_SERVING"
