"""What identity has revoked, as this process knows it.

Fed by the revocation stream (``runtime.revocations``); consulted on every call by the
token verifier. Five kinds:

- one token (``jti``);
- a session (a refresh-token family, ``sid``);
- a principal: every token of it issued before a cut-off, in one organisation when the
  entry names one, in every organisation otherwise (an API key as a whole, too);
- an organisation: every credential of it issued before a cut-off, and its API keys must
  be verified again (:meth:`RevocationSet.organization_epoch` changes, which the API-key
  cache of ``runtime.security`` watches);
- a signing key: nothing it signed is trusted any more (:meth:`RevocationSet.key_revoked`,
  consulted by :class:`mesh.jwks.TrustedKeys`).

Cut-offs and ``iat``. Tokens carry ``iat`` in whole seconds and a cut-off revokes the
tokens whose ``iat`` is *before* it. Identity makes this exact (``services.identity.store_log``):
a cut-off is always after the current second and after every cut-off still ahead of now
that a token of the same principal could have been stamped with, so cut-offs of one
principal (and of one organisation) strictly increase, even within one second; and a
token is never stamped before the latest cut-off of its principal or organisation. So a
token minted between two revocations in the same second has ``iat`` = the first cut-off,
which is before the second one: it does not survive.

Entries are forgotten once no token they match can still be unexpired: at their
``expire_time`` (the access-token lifetime plus leeway after the revocation).

Freshness. A follower that stops hearing from identity cannot know what was revoked
since: once :meth:`follow` was called, :meth:`stale` says whether nothing was heard for
longer than the allowed staleness, and the authenticator then refuses credentials with
UNAVAILABLE rather than let a revoked one through.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mesh.tokens import Claims

TOKEN = 1
SESSION = 2
PRINCIPAL = 3
ORGANIZATION = 4
SIGNING_KEY = 5

# How long an entry without an expire_time is kept (longest access token plus leeway).
DEFAULT_RETENTION = 900.0 + 30.0
_PRUNE_EVERY = 30.0


def organization_of(principal: str) -> str:
    """The id in ``organizations/{organization}`` (an ORGANIZATION entry's principal)."""
    return principal.removeprefix("organizations/")


class RevocationSet:
    """Revoked token ids, sessions, principals, organisations and signing keys."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_staleness: float = 30.0,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self.max_staleness = max_staleness
        # Each value is what the entry needs and, last, when it may be forgotten.
        self._tokens: dict[str, float] = {}
        self._sessions: dict[str, float] = {}
        self._principals: dict[tuple[str, str], tuple[float, float]] = {}  # (subject, org or "") → cut-off
        self._organizations: dict[str, tuple[float, float]] = {}
        self._organization_epochs: dict[str, int] = {}
        self._keys: dict[str, float] = {}
        self.key_generation = 0
        self.last_sequence = 0
        self._following = False
        self._last_heard = 0.0
        self._pruned_at = self._monotonic()

    def add(
        self,
        kind: int,
        *,
        token_id: str = "",
        session: str = "",
        principal: str = "",
        organization_id: str = "",
        issued_before: float = 0.0,
        expires_at: float = 0.0,
        key_id: str = "",
        sequence: int = 0,
    ) -> None:
        """Record one revocation (idempotent)."""
        forget_at = expires_at or self._clock() + DEFAULT_RETENTION
        if kind == TOKEN and token_id:
            self._tokens[token_id] = max(forget_at, self._tokens.get(token_id, 0.0))
        elif kind == SESSION and session:
            self._sessions[session] = max(forget_at, self._sessions.get(session, 0.0))
        elif kind == PRINCIPAL and principal:
            self._principals[(principal, organization_id)] = _later(
                self._principals.get((principal, organization_id)), issued_before or self._clock(), forget_at
            )
        elif kind == ORGANIZATION and (organization_id or principal):
            organization = organization_id or organization_of(principal)
            self._organizations[organization] = _later(
                self._organizations.get(organization), issued_before or self._clock(), forget_at
            )
            self._organization_epochs[organization] = self._organization_epochs.get(organization, 0) + 1
        elif kind == SIGNING_KEY and key_id:
            self._keys[key_id] = max(forget_at, self._keys.get(key_id, 0.0))
            self.key_generation += 1
        self.last_sequence = max(self.last_sequence, sequence)
        self._maybe_prune()

    def is_revoked(self, claims: Claims) -> bool:
        """Whether a verified token was revoked (by id, session, principal or organisation)."""
        if claims.token_id in self._tokens or (claims.session_id and claims.session_id in self._sessions):
            return True
        for scope in ("", claims.organization_id):
            entry = self._principals.get((claims.subject, scope))
            if entry is not None and claims.issued_at < entry[0]:
                return True
        organization = self._organizations.get(claims.organization_id) if claims.organization_id else None
        return organization is not None and claims.issued_at < organization[0]

    def principal_revoked(self, subject: str) -> bool:
        """Whether a principal was revoked at all (API keys used directly)."""
        return any(key[0] == subject for key in self._principals)

    def organization_epoch(self, organization_id: str) -> int:
        """How many organisation revocations of ``organization_id`` this process has seen.

        A verification of one of its API keys that began under an older epoch may have been
        answered before the organisation was suspended: it must be made again.
        """
        return self._organization_epochs.get(organization_id, 0)

    def organization_epochs(self) -> dict[str, int]:
        """A copy of every organisation's epoch (see :meth:`organization_epoch`)."""
        return dict(self._organization_epochs)

    def key_revoked(self, kid: str) -> bool:
        """Whether the signing key ``kid`` was revoked."""
        return kid in self._keys

    # --- freshness ---------------------------------------------------------------------

    def follow(self) -> None:
        """Start counting staleness: from now on :meth:`stale` needs news from identity."""
        if not self._following:
            self._following = True
            self._last_heard = self._monotonic()

    def heard(self) -> None:
        """Note that identity's stream said something (an entry, the marker or a heartbeat)."""
        self._last_heard = self._monotonic()
        self._maybe_prune()

    def stale(self) -> bool:
        """Whether this process follows identity and has heard nothing for too long."""
        return self._following and self._monotonic() - self._last_heard > self.max_staleness

    # --- pruning -----------------------------------------------------------------------

    def _maybe_prune(self) -> None:
        if self._monotonic() - self._pruned_at >= _PRUNE_EVERY:
            self.prune()

    def prune(self) -> None:
        """Forget entries that no unexpired token can match any more."""
        now = self._clock()
        self._pruned_at = self._monotonic()
        self._tokens = {jti: until for jti, until in self._tokens.items() if until > now}
        self._sessions = {sid: until for sid, until in self._sessions.items() if until > now}
        self._principals = {key: entry for key, entry in self._principals.items() if entry[1] > now}
        self._organizations = {key: entry for key, entry in self._organizations.items() if entry[1] > now}
        self._keys = {kid: until for kid, until in self._keys.items() if until > now}

    def __len__(self) -> int:
        """How many entries are remembered."""
        return (
            len(self._tokens) + len(self._sessions) + len(self._principals) + len(self._organizations) + len(self._keys)
        )


def _later(current: tuple[float, float] | None, cutoff: float, forget_at: float) -> tuple[float, float]:
    if current is None:
        return cutoff, forget_at
    return max(current[0], cutoff), max(current[1], forget_at)
