"""The JWKS cache's lifetime (fake clock) and immediate key revocation."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.access import default_access_table
from mesh.errors import Unauthenticated
from mesh.jwks import JwksCache, StaticKeys, TrustedKeys
from mesh.revocations import SIGNING_KEY, RevocationSet
from mesh.tokens import TokenVerifier
from runtime.security import Authenticator
from tests.support.tokens import AUDIENCE, ISSUER, TestIssuer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Identity:
    """A JWKS endpoint that can change its keys or go down."""

    def __init__(self, *issuers: TestIssuer) -> None:
        self.document: dict[str, Any] = {"keys": [i.public_jwk for i in issuers]}
        self.down = False
        self.calls = 0

    async def fetch(self) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise ConnectionError("identity is down")
        return self.document


async def test_a_fetched_set_is_used_for_its_ttl_then_fetched_again():
    old, new = TestIssuer(), TestIssuer()
    identity, clock = Identity(old), Clock()
    cache = JwksCache(identity.fetch, ttl=300, max_age=900, cooldown=5, clock=clock)
    assert await cache.key(old.kid) is not None
    identity.document = {"keys": [new.public_jwk]}  # identity retired the old key
    clock.now += 299
    assert await cache.key(old.kid) is not None  # still within the ttl: no fetch
    assert identity.calls == 1
    clock.now += 2
    assert await cache.key(old.kid) is None  # past the ttl: refetched, the retired key is gone
    assert identity.calls == 2
    assert await cache.key(new.kid) is not None


async def test_a_failing_refetch_keeps_the_old_set_up_to_the_max_age_then_fails_closed():
    key = TestIssuer()
    identity, clock = Identity(key), Clock()
    cache = JwksCache(identity.fetch, ttl=300, max_age=900, cooldown=5, clock=clock)
    assert await cache.key(key.kid) is not None
    identity.down = True
    clock.now += 301
    assert await cache.key(key.kid) is not None  # stale but within the max age
    clock.now += 1
    assert await cache.key(key.kid) is not None
    assert identity.calls == 2  # retried at most once per cool-down
    clock.now += 600
    assert await cache.key(key.kid) is None  # past the max age: fail closed
    identity.down = False
    clock.now += 5
    assert await cache.key(key.kid) is not None  # back once identity answers


async def test_a_revoked_key_is_refused_at_once_whatever_the_cache_holds():
    key = TestIssuer()
    identity, clock = Identity(key), Clock()
    revocations = RevocationSet()
    trusted = TrustedKeys(JwksCache(identity.fetch, ttl=300, clock=clock), revocations)
    assert await trusted.key(key.kid) is not None
    revocations.add(SIGNING_KEY, key_id=key.kid)
    assert await trusted.key(key.kid) is None
    assert await trusted.key(key.kid) is None


async def test_a_cached_token_signed_by_a_revoked_key_fails_on_the_next_call():
    issuer = TestIssuer()
    revocations = RevocationSet()
    keys = TrustedKeys(StaticKeys(issuer.jwks), revocations)
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, revocations=revocations)
    authenticator = Authenticator(verifier, default_access_table(), revocations, None, api_keys=False)
    token = issuer.mint(subject="users/u_ada")
    metadata = {"authorization": f"Bearer {token}"}
    await authenticator.authenticate(metadata)
    await authenticator.authenticate(metadata)  # cached
    revocations.add(SIGNING_KEY, key_id=issuer.kid)
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(metadata)
