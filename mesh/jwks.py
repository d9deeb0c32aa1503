"""Verification keys: a JWKS cache with a lifetime that refetches on an unknown ``kid``.

Refetches are single-flight (concurrent misses share one request) and limited by a
cool-down, so a stream of tokens with made-up ``kid`` values cannot turn into a stream
of requests to identity. The key set only ever comes from identity, never from a URL a
token names.

Lifetime: a fetched set is used for ``ttl`` seconds (``VOCELIO_JWKS_TTL``); the first use
after that refetches it, so a key identity retired stops verifying here within ``ttl``.
If refetching fails the old set is kept, but only until it is ``max_age`` seconds old
(``VOCELIO_JWKS_MAX_AGE``): after that no key verifies (fail closed) until a fetch works.

Immediate revocation: :class:`TrustedKeys` puts a source behind the revocation list, so a
key identity revoked (``REVOCATION_KIND_SIGNING_KEY``) is refused from the moment the
entry arrives, whatever the cache holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import jwt

log = logging.getLogger(__name__)

JwksFetcher = Callable[[], Awaitable[Mapping[str, Any]]]


def parse_jwks(document: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    """Keys by ``kid`` from a JWKS document; keys without a kid, or not usable for signing, are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document.get("keys", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as error:
            log.warning("skipping JWK %s: %s", entry.get("kid"), error)
    return keys


class StaticKeys:
    """A fixed key set (identity's own view of its keys, and tests)."""

    def __init__(self, document: Mapping[str, Any] | str) -> None:
        self._keys = parse_jwks(json.loads(document) if isinstance(document, str) else document)

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this kid, or ``None``."""
        return self._keys.get(kid)


class JwksCache:
    """Keys from a fetcher, cached for ``ttl``; an unknown kid triggers at most one refetch per cool-down."""

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        cooldown: float = 5.0,
        ttl: float = 300.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._cooldown = cooldown
        self._ttl = ttl
        self._max_age = max(max_age, ttl)
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")  # the last fetch that worked
        self._tried_at = -float("inf")  # the last attempt
        self._lock = asyncio.Lock()
        self._force = False
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this kid, refetching the set if it is unknown or the set has outlived its ttl."""
        key = self._keys.get(kid)
        if key is not None and not self._force and self._clock() - self._fetched_at <= self._ttl:
            return key
        await self._refresh()
        if self._clock() - self._fetched_at > self._max_age:
            if self._keys:
                log.warning("the JWKS could not be refreshed for %.0f s; refusing its keys", self._max_age)
                self._keys = {}
            return None
        return self._keys.get(kid)

    def expire(self) -> None:
        """Refetch on the next use, cool-down or not (a key was revoked: its replacement must verify at once)."""
        self._force = True
        self._tried_at = -float("inf")

    async def _refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._tried_at < self._cooldown:
                return  # someone just fetched (or failed to): do not ask again yet
            self._tried_at = self._clock()
            try:
                document = await self._fetch()
            except Exception as error:  # noqa: BLE001 - keep serving with the keys we have, up to max_age
                log.warning("fetching the JWKS failed: %s", type(error).__name__)
                return
            self.fetches += 1
            self._keys = parse_jwks(document)
            self._fetched_at = self._clock()
            self._force = False


class KeyRevocations(Protocol):
    """What :class:`TrustedKeys` asks the revocation list (``mesh.revocations.RevocationSet``)."""

    key_generation: int

    def key_revoked(self, kid: str) -> bool:
        """Whether identity revoked the signing key ``kid``."""


class TrustedKeys:
    """A key source whose revoked keys (by the revocation list) never verify."""

    def __init__(self, source: KeySource, revocations: KeyRevocations) -> None:
        self.source = source
        self._revocations = revocations
        self._generation = revocations.key_generation

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this kid, or ``None`` when it is unknown or revoked."""
        if self._generation != self._revocations.key_generation:
            # Once per revocation (never per token): refetch now, so the replacement key verifies at once.
            self._generation = self._revocations.key_generation
            expire = getattr(self.source, "expire", None)
            if expire is not None:
                expire()
        if self._revocations.key_revoked(kid):
            return None
        return await self.source.key(kid)


class KeySource(Protocol):
    """Anything that finds a verification key by kid (``mesh.tokens.KeySource``)."""

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this kid, or ``None``."""
