"""Verification keys: a JWKS cache that refetches on an unknown ``kid``.

Refetches are single-flight (concurrent misses share one request) and limited by a
cool-down, so a stream of tokens with made-up ``kid`` values cannot turn into a stream
of requests to identity. The key set only ever comes from identity, never from a URL a
token names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

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
    """Keys from a fetcher, cached; an unknown kid triggers at most one refetch per cool-down."""

    def __init__(
        self, fetch: JwksFetcher, *, cooldown: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._cooldown = cooldown
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this kid, refetching the set once if it is unknown."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            if key is not None or self._clock() - self._fetched_at < self._cooldown:
                return key
            self._fetched_at = self._clock()
            try:
                document = await self._fetch()
            except Exception as error:  # noqa: BLE001 - keep serving with the keys we have
                log.warning("fetching the JWKS failed: %s", type(error).__name__)
                return None
            self.fetches += 1
            self._keys = parse_jwks(document)
            return self._keys.get(kid)
