"""RevokePrincipalTokens for API keys, which developer_api names under their organisation."""

from __future__ import annotations

import grpc
import pytest

from tests.services.identity.conftest import Harness, pb
from vocelio.identity.v1 import revocation_pb2


async def test_an_api_key_principal_is_revoked_by_its_organisation_scoped_name(harness: Harness):
    service = harness.with_token(await harness.service_token("developer_api"))
    key = "organizations/org_1/api_keys/crm-sync"
    done = await service.RevokePrincipalTokens(
        pb.RevokePrincipalTokensRequest(principal=key, organization_id="org_1", reason="api_key_revoked")
    )
    assert (done.revocation.kind, done.revocation.principal) == (revocation_pb2.REVOCATION_KIND_PRINCIPAL, key)
    # The global form of before AIP-122 names no principal any more, nor do other resources.
    for wrong in ("api_keys/crm-sync", "organizations/org_1/agents/a1", "organizations/org_1/api_keys/a/b"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await service.RevokePrincipalTokens(
                pb.RevokePrincipalTokensRequest(principal=wrong, organization_id="org_1", reason="api_key_revoked")
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, wrong
