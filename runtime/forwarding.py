"""Whether a call came through the REST edge: its proxy token, verified and cached.

The edge sends its own service token in ``x-vocelio-proxy-authorization`` beside the
caller's ``authorization``. Only when that token verifies as ``services/edge`` does a
service believe the ``x-forwarded-for`` the edge set (:mod:`mesh.forwarding`). The same
token comes with every call for minutes, so a verified one is remembered until it
expires (bounded; revocation is still checked on every call).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping

from mesh.forwarding import EDGE_SUBJECT, PROXY_AUTHORIZATION
from mesh.tokens import Claims, InvalidToken, TokenVerifier

log = logging.getLogger(__name__)

_CACHE_SIZE = 64


class EdgeVouching:
    """Verifies the edge's proxy token on incoming calls."""

    def __init__(self, verifier: TokenVerifier, *, cache_size: int = _CACHE_SIZE) -> None:
        self._verifier = verifier
        self._cache_size = cache_size
        self._verified: collections.OrderedDict[str, Claims] = collections.OrderedDict()

    async def vouched(self, metadata: Mapping[str, str]) -> bool:
        """Whether the call carries the edge's valid proxy token (a bad one is logged and ignored)."""
        value = metadata.get(PROXY_AUTHORIZATION, "")
        if not value:
            return False
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            log.info("proxy credential refused: not a bearer token")
            return False
        claims = self._verified.get(token)
        if claims is not None:
            if claims.expires_at + self._verifier.leeway < time.time():
                del self._verified[token]
            elif self._verifier.revocations.is_revoked(claims):
                log.info("proxy credential refused: revoked")
                return False
            else:
                self._verified.move_to_end(token)
                return True
        try:
            claims = await self._verifier.verify(token)
        except InvalidToken as error:
            log.info("proxy credential refused: %s", error.reason)
            return False
        if claims.subject != EDGE_SUBJECT or claims.role != "SERVICE":
            log.info("proxy credential refused: %s is not the edge", claims.subject[:100])
            return False
        self._verified[token] = claims
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return True
