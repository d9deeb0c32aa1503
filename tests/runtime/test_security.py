"""The Authenticator's principal cache: reused while valid, never past expiry or revocation."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from mesh.access import default_access_table
from mesh.errors import Unauthenticated
from mesh.jwks import StaticKeys
from mesh.revocations import PRINCIPAL, SESSION, SIGNING_KEY, TOKEN, RevocationSet
from mesh.tokens import TokenVerifier
from runtime.security import Authenticator
from tests.support.tokens import AUDIENCE, ISSUER, TestIssuer


class CountingKeys(StaticKeys):
    """Static keys that count how often a signature had to be checked."""

    def __init__(self, document: Any) -> None:
        super().__init__(document)
        self.lookups = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        self.lookups += 1
        return await super().key(kid)


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
def keys(issuer: TestIssuer) -> CountingKeys:
    return CountingKeys(issuer.jwks)


@pytest.fixture
def revocations() -> RevocationSet:
    return RevocationSet()


@pytest.fixture
def authenticator(keys: CountingKeys, revocations: RevocationSet) -> Authenticator:
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, revocations=revocations)
    return Authenticator(verifier, default_access_table(), revocations, None, api_keys=False)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_a_verified_token_is_verified_once_and_its_principal_reused(authenticator, keys, issuer):
    token = issuer.mint(subject="users/u_ada", role="ADMIN", org="org_a")
    first = await authenticator.authenticate(bearer(token))
    second = await authenticator.authenticate(bearer(token))
    assert second is first
    assert (first.subject, first.organization_id, first.role) == ("users/u_ada", "org_a", "ADMIN")
    assert keys.lookups == 1


@pytest.mark.parametrize("kind", ["token", "session", "principal"])
async def test_a_revoked_token_fails_on_the_next_call(authenticator, revocations, issuer, kind):
    token = issuer.mint(subject="users/u_ada")
    claims = jwt.decode(token, options={"verify_signature": False})
    await authenticator.authenticate(bearer(token))
    if kind == "token":
        revocations.add(TOKEN, token_id=claims["jti"], expires_at=claims["exp"])
    elif kind == "session":
        revocations.add(SESSION, session=claims["sid"])
    else:
        revocations.add(PRINCIPAL, principal="users/u_ada", issued_before=claims["iat"] + 1)
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(bearer(token))


async def test_a_cached_token_that_has_expired_is_refused(authenticator, keys, issuer):
    token = issuer.mint(lifetime=-(authenticator.verifier.leeway + 5))
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(bearer(token))
    # Expired at once: nothing was cached, so every attempt is verified (and refused) again.
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(bearer(token))
    assert keys.lookups == 2


async def test_the_cache_is_bounded_and_forgets_the_least_recently_used(keys, revocations, issuer):
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, revocations=revocations)
    authenticator = Authenticator(verifier, default_access_table(), revocations, None, api_keys=False, cache_size=2)
    tokens = [issuer.mint(subject=f"users/u_{n}") for n in range(3)]
    for token in tokens[:2]:
        await authenticator.authenticate(bearer(token))
    await authenticator.authenticate(bearer(tokens[0]))  # most recently used now
    await authenticator.authenticate(bearer(tokens[2]))  # pushes out tokens[1]
    lookups = keys.lookups
    await authenticator.authenticate(bearer(tokens[0]))
    assert keys.lookups == lookups
    await authenticator.authenticate(bearer(tokens[1]))
    assert keys.lookups == lookups + 1


def entries(token: str, *more: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """A call's metadata as the server chain passes it: every entry, in order."""
    return (("user-agent", "grpc-python"), ("authorization", f"Bearer {token}"), *more)


async def test_the_cached_path_answers_only_tokens_verified_before(authenticator, keys, issuer):
    token = issuer.mint(subject="users/u_ada", role="ADMIN", org="org_a")
    assert authenticator.authenticate_cached(entries(token)) is None  # not verified yet: await authenticate
    principal = await authenticator.authenticate(entries(token))
    assert authenticator.authenticate_cached(entries(token)) is principal
    assert keys.lookups == 1
    assert authenticator.authenticate_cached((("user-agent", "grpc-python"),)) is None  # no credential
    assert authenticator.authenticate_cached((("x-api-key", "vk_secret"),)) is None  # API keys: developer_api


async def test_the_cached_path_refuses_two_credentials(authenticator, issuer):
    token = issuer.mint(subject="users/u_ada")
    await authenticator.authenticate(entries(token))
    with pytest.raises(Unauthenticated):
        authenticator.authenticate_cached(entries(token, ("x-api-key", "vk_secret")))


async def test_the_cached_path_refuses_a_token_once_its_exp_has_passed(authenticator, issuer, monkeypatch):
    token = issuer.mint(subject="users/u_ada", lifetime=60)
    await authenticator.authenticate(entries(token))
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr("runtime.security.time.time", lambda: exp + authenticator.verifier.leeway + 1)
    with pytest.raises(Unauthenticated):
        authenticator.authenticate_cached(entries(token))
    # forgotten: the next call verifies it again (and the verifier refuses it then)
    assert authenticator.authenticate_cached(entries(token)) is None


@pytest.mark.parametrize("kind", ["token", "session", "principal"])
async def test_on_the_cached_path_revocation_still_wins(authenticator, revocations, issuer, kind):
    token = issuer.mint(subject="users/u_ada")
    claims = jwt.decode(token, options={"verify_signature": False})
    await authenticator.authenticate(entries(token))
    assert authenticator.authenticate_cached(entries(token)) is not None
    if kind == "token":
        revocations.add(TOKEN, token_id=claims["jti"], expires_at=claims["exp"])
    elif kind == "session":
        revocations.add(SESSION, session=claims["sid"])
    else:
        revocations.add(PRINCIPAL, principal="users/u_ada", issued_before=claims["iat"] + 1)
    with pytest.raises(Unauthenticated):
        authenticator.authenticate_cached(entries(token))


async def test_a_signing_key_revocation_empties_the_cache_of_the_cached_path(authenticator, revocations, issuer):
    token = issuer.mint(subject="users/u_ada")
    await authenticator.authenticate(entries(token))
    revocations.add(SIGNING_KEY, key_id="some-other-key")
    assert authenticator.authenticate_cached(entries(token)) is None  # verified again, against the trusted keys


async def test_the_cached_path_is_bounded_like_the_cache(keys, revocations, issuer):
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, revocations=revocations)
    authenticator = Authenticator(verifier, default_access_table(), revocations, None, api_keys=False, cache_size=1)
    first, second = issuer.mint(subject="users/u_a"), issuer.mint(subject="users/u_b")
    await authenticator.authenticate(entries(first))
    await authenticator.authenticate(entries(second))  # pushes out the first
    assert authenticator.authenticate_cached(entries(first)) is None
    assert authenticator.authenticate_cached(entries(second)) is not None
