"""The identity service's state in one process, and the steps every use case shares.

Start-up work that needs the database — loading (or creating) the signing keys and
creating the bootstrap SUPER_ADMIN — runs on first use (:meth:`Identity.ready`), which
every RPC awaits: it costs a flag check once done, works whenever the database comes up
(before or after the server), and needs no background task to clean up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import AccessTable, default_access_table
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import Unavailable
from mesh.kit.caller import CallerInfo
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.idempotency import IdempotencyStore
from mesh.kit.ids import new_id
from mesh.kit.paging import PageTokens
from mesh.registry import Registry
from mesh.tokens import LEEWAY_SECONDS, TokenVerifier
from services.identity import audit, store, store_log
from services.identity.decoys import RememberedAnswers
from services.identity.directory import Directory
from services.identity.domain import UserState, issue_instant
from services.identity.feed import RevocationFeed
from services.identity.keyring import Keyring
from services.identity.models import AuditEvent, User
from services.identity.oauth import TokenSubject, access_claims
from services.identity.passwords import Passwords
from services.identity.ratelimit import RateLimiter, SignInThrottle

if TYPE_CHECKING:
    from services.identity.signup import SignUpResult

log = logging.getLogger(__name__)

# Sign-in attempts per client address, per minute (per account, failures add delays: see SignInThrottle).
ATTEMPTS_PER_ADDRESS = 30
# Successful client_credentials grants per client a minute (a service renews every ~14 minutes).
GRANTS_PER_CLIENT = 60
# After this many failed sign-ins in a row, an account's next attempt waits 1 s, then 2 s, 4 s … 15 min;
# an address that signed in to the account this recently is not held up by that delay.
SIGN_IN_FREE_FAILURES = 4
SIGN_IN_FIRST_DELAY = 1.0
SIGN_IN_LONGEST_DELAY = 900.0
TRUSTED_ADDRESS_DAYS = 30
SIGN_IN_CLOCK: Callable[[], float] = time.monotonic  # seconds, for the delays (tests stop it)
SERVICE_NAME = "identity"


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed access token and when it expires."""

    token: str
    expires_in: int
    expires_at: int


class Identity:
    """Everything the use cases share: settings, database, keys, hashing, limits, the revocation feed."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: ServiceDatabase,
        registry: Registry,
        keyring: Keyring,
        directory: Directory,
        passwords: Passwords | None = None,
        clock: Clock = SYSTEM_CLOCK,
        page_tokens: PageTokens | None = None,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.registry = registry
        self.keyring = keyring
        self.directory = directory
        self.passwords = passwords or Passwords(
            max_concurrency=settings.argon2_max_concurrency or None, max_wait=settings.argon2_max_wait
        )
        # Use cases read the time as app.clock(): the injected clock's reading.
        self.clock: Callable[[], dt.datetime] = clock.now
        # Signed, query-bound page tokens; without a key from the context they die with the process.
        self.page_tokens = page_tokens or PageTokens.ephemeral()
        self.idempotency = idempotency or IdempotencyStore(clock)
        self.feed = RevocationFeed()
        self.address_limiter = RateLimiter(ATTEMPTS_PER_ADDRESS, 60.0)
        self.client_failures = RateLimiter(ATTEMPTS_PER_ADDRESS, 60.0)
        self.client_grants = RateLimiter(GRANTS_PER_CLIENT, 60.0)
        self.sign_in_throttle = SignInThrottle(
            free_failures=SIGN_IN_FREE_FAILURES,
            first_delay=SIGN_IN_FIRST_DELAY,
            longest_delay=SIGN_IN_LONGEST_DELAY,
            clock=SIGN_IN_CLOCK,
        )
        # SignUp's answers for addresses that had an account, by request_id, so a retry repeats them.
        self.sign_up_decoys: RememberedAnswers[SignUpResult] = RememberedAnswers()
        self.access: AccessTable = default_access_table()
        self.verifier = TokenVerifier(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            keys=keyring,
            max_lifetime=settings.access_token_ttl,
        )
        self._ready_lock = asyncio.Lock()
        self._bootstrapped = False
        self._own_token = ""
        self._own_token_kid = ""
        self._own_token_until = 0.0

    @property
    def access_ttl(self) -> int:
        """Access-token lifetime in seconds."""
        return self.settings.access_token_ttl

    @property
    def revocation_lifetime(self) -> dt.timedelta:
        """How long a revocation entry must be kept: the longest token life plus verifier leeway."""
        return dt.timedelta(seconds=self.access_ttl + LEEWAY_SECONDS)

    @property
    def key_retire_after(self) -> dt.timedelta:
        """How long a demoted key keeps verifying: every token it signed has expired by then."""
        return dt.timedelta(seconds=self.access_ttl + 60)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction; followers of the revocation log are woken after it commits a revocation."""
        async with self.database.sessions.begin() as session:
            yield session
        if session.info.pop(store_log.WROTE_REVOCATION, False):
            self.feed.notify()

    async def ready(self) -> None:
        """Load the signing keys (creating the first one) and create the bootstrap admin, once.

        Raises:
            Unavailable: the database cannot be used yet.

        """
        if self.keyring.loaded and self._bootstrapped and not self.keyring.stale:
            return
        async with self._ready_lock:
            if self.keyring.loaded and self._bootstrapped and not self.keyring.stale:
                return
            try:
                await self.reload_keys()
                await self._prune()
                if not self._bootstrapped:
                    await self._bootstrap_admin()
                    self._bootstrapped = True
            except DBAPIError as error:
                if not (self.keyring.loaded and self._bootstrapped):
                    log.warning("identity is not ready: %s", type(error).__name__)
                    raise Unavailable("identity's database is not ready yet; try again shortly") from None
                log.warning("refreshing the signing keys failed (%s); keeping the loaded ones", type(error).__name__)
                self.keyring.postpone()

    async def reload_keys(self) -> None:
        """Read the signing keys from the store again."""
        try:
            async with self.transaction() as session:
                await self.keyring.load(session, self.clock(), self.key_retire_after)
        except IntegrityError:
            # Another process created the first ACTIVE key at the same moment; use theirs.
            async with self.transaction() as session:
                await self.keyring.load(session, self.clock(), self.key_retire_after)

    async def _prune(self) -> None:
        """Forget revocations and refresh tokens that nothing can match any more (runs with each key refresh)."""
        now = self.clock()
        async with self.transaction() as session:
            pruned = await store_log.prune_revocations(session, now)
            await store.prune_refresh_tokens(session, now)
        if pruned:
            log.info("pruned %d expired revocations", pruned)

    async def _bootstrap_admin(self) -> None:
        email = self.settings.bootstrap_admin_email.strip().lower()
        if not email:
            return
        async with self.transaction() as session:
            if await store.get_user_by_email(session, email) is not None:
                return
        password_hash = await self.passwords.hash(self.settings.bootstrap_admin_password)
        now = self.clock()
        try:
            async with self.transaction() as session:
                user = User(
                    id=new_id("u"),
                    email=email,
                    password_hash=password_hash,
                    display_name="Platform administrator",
                    email_verified=True,
                    state=UserState.ACTIVE.value,
                    platform_admin=True,
                    password_update_time=now,
                    create_time=now,
                    update_time=now,
                    creator="configuration",
                    last_modifier="configuration",
                )
                await store.add_user(session, user)
                await self.record(
                    session,
                    action="USER_SIGNED_UP",
                    actor=audit.Actor("services/identity", "SERVICE", SERVICE_NAME, "SERVICE"),
                    target=f"users/{user.id}",
                    details={"bootstrap": "true"},
                )
        except IntegrityError:
            return  # another process created it first
        log.info("created the bootstrap SUPER_ADMIN users/%s", user.id)

    async def record(
        self,
        session: AsyncSession,
        *,
        action: str,
        actor: audit.Actor,
        outcome: str = audit.SUCCESS,
        request: CallerInfo | None = None,
        organization_id: str = "",
        target: str = "",
        details: dict[str, str] | None = None,
    ) -> AuditEvent:
        """Append one of identity's own audit events."""
        row = audit.event(
            action=action,
            outcome=outcome,
            actor=actor,
            request=request or CallerInfo(),
            now=self.clock(),
            organization_id=organization_id,
            target=target,
            details=details,
        )
        return await store_log.add_audit_event(session, row)

    async def mint(
        self, session: AsyncSession | None, who: TokenSubject, *, not_after: dt.datetime | None = None
    ) -> IssuedToken:
        """Sign an access token for ``who`` with the ACTIVE key.

        With a session, a revocation of the principal or of its organisation whose cut-off is
        still ahead is looked up so the new token is stamped at its cut-off, not before it
        (see ``domain.issue_instant`` and ``store_log``).
        """
        now = self.clock()
        cutoff = (
            await store_log.latest_cutoff(session, who.subject, now, who.organization_id)
            if session is not None
            else None
        )
        issued_at = issue_instant(now, cutoff)
        claims = access_claims(
            who,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            issued_at=issued_at,
            lifetime=self.access_ttl,
            not_after=not_after,
        )
        token = self.keyring.active().sign(claims)
        expires_at = int(claims["exp"])
        return IssuedToken(token, max(0, expires_at - int(now.timestamp())), expires_at)

    async def own_token(self) -> str:
        """Identity's own service token, for its calls to team_hub and developer_api."""
        await self.ready()
        if (
            self._own_token
            and time.monotonic() < self._own_token_until
            and self._own_token_kid == self.keyring.active().kid  # never a token of a revoked or replaced key
        ):
            return self._own_token
        subject = f"services/{SERVICE_NAME}"
        scopes = tuple(sorted(self.registry.service_permissions(SERVICE_NAME)))
        issued = await self.mint(None, TokenSubject(subject, "", "SERVICE", scopes, client_id=subject))
        self._own_token = issued.token
        self._own_token_kid = self.keyring.active().kid
        self._own_token_until = time.monotonic() + max(0, issued.expires_in - 60)
        return issued.token
