"""What identity has revoked, as this process knows it.

Fed by the revocation stream (``runtime.revocations``); consulted on every call by the
token verifier. Three kinds: one token (``jti``, until it expires anyway), a session (a
refresh-token family, ``sid``), and a principal (every token it was issued before a
moment; an API key as a whole).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mesh.tokens import Claims

TOKEN = 1
SESSION = 2
PRINCIPAL = 3


class RevocationSet:
    """Revoked token ids, sessions and principals."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._sessions: set[str] = set()
        self._principals: dict[str, float] = {}
        self.last_sequence = 0

    def add(
        self,
        kind: int,
        *,
        token_id: str = "",
        session: str = "",
        principal: str = "",
        issued_before: float = 0.0,
        expires_at: float = 0.0,
        sequence: int = 0,
    ) -> None:
        """Record one revocation (idempotent)."""
        if kind == TOKEN and token_id:
            self._tokens[token_id] = expires_at or self._clock() + 3600
        elif kind == SESSION and session:
            self._sessions.add(session)
        elif kind == PRINCIPAL and principal:
            moment = issued_before or self._clock()
            self._principals[principal] = max(moment, self._principals.get(principal, 0.0))
        self.last_sequence = max(self.last_sequence, sequence)
        if len(self._tokens) > 10000:
            self.prune()

    def is_revoked(self, claims: Claims) -> bool:
        """Whether a verified token was revoked (by id, session or principal)."""
        if claims.token_id in self._tokens or (claims.session_id and claims.session_id in self._sessions):
            return True
        revoked_before = self._principals.get(claims.subject)
        return revoked_before is not None and claims.issued_at < revoked_before

    def principal_revoked(self, subject: str) -> bool:
        """Whether a principal was revoked at all (API keys used directly)."""
        return subject in self._principals

    def prune(self) -> None:
        """Forget revoked tokens that have expired anyway."""
        now = self._clock()
        self._tokens = {jti: expires for jti, expires in self._tokens.items() if expires > now}
