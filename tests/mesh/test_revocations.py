"""The revocation list's freshness: fail closed (UNAVAILABLE) once identity has been silent too long."""

from __future__ import annotations

import pytest

from mesh.access import default_access_table
from mesh.errors import Unavailable
from mesh.jwks import StaticKeys
from mesh.revocations import RevocationSet
from mesh.tokens import TokenVerifier
from runtime.security import Authenticator
from tests.support.tokens import AUDIENCE, ISSUER, TestIssuer


async def test_a_follower_that_hears_nothing_for_too_long_refuses_credentials_until_it_hears_again():
    ticks = [0.0]
    revocations = RevocationSet(monotonic=lambda: ticks[0], max_staleness=30)
    issuer = TestIssuer()
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=StaticKeys(issuer.jwks), revocations=revocations)
    authenticator = Authenticator(verifier, default_access_table(), revocations, None, api_keys=False)
    user = {"authorization": f"Bearer {issuer.mint(subject='users/u_ada')}"}
    service = {"authorization": f"Bearer {issuer.mint(subject='services/agents', role='SERVICE', org='', sid='')}"}
    assert not revocations.stale()  # not following: nothing to be stale about
    revocations.follow()
    ticks[0] = 29.0
    await authenticator.authenticate(user)
    ticks[0] = 31.0
    assert revocations.stale()
    with pytest.raises(Unavailable):
        await authenticator.authenticate(user)
    # Mesh services keep working (the revocation stream itself is one of their calls).
    await authenticator.authenticate(service)
    revocations.heard()
    await authenticator.authenticate(user)
