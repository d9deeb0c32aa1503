"""Password hashing with argon2id (RFC 9106), off the event loop, a bounded number at a time.

argon2-cffi's ``PasswordHasher()`` defaults are argon2id with RFC 9106's low-memory
profile. Hashing takes tens of milliseconds and 64 MiB, so it runs in a worker thread.
Unknown accounts are checked against a dummy hash, so the time a wrong e-mail takes
equals the time a wrong password takes.

Two bounds keep a flood of sign-ins from exhausting memory and CPU: at most
``max_concurrency`` hashes run at once in the process (the others wait their turn, for at
most ``max_wait`` seconds, then fail with :class:`HashingBusy`, RESOURCE_EXHAUSTED with a
RetryInfo — never an unbounded queue), and a password longer than
:data:`MAX_PASSWORD_BYTES` is never hashed: verifying it answers "wrong" at once (no
stored password can be that long: new ones are at most 128 characters).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mesh.errors import InvalidArgument
from services.identity.domain import normalise_password
from services.identity.oauth import RateLimited

# 128 characters of up to 4 UTF-8 bytes each fit twice over; NIST SP 800-63B asks for at least 64 characters.
MAX_PASSWORD_BYTES = 1024
DEFAULT_MAX_WAIT = 5.0


def default_concurrency() -> int:
    """Hashes allowed at once by default: two per CPU core, between 2 and 8 (8 × 64 MiB at most)."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def too_long(password: str) -> bool:
    """Whether a password is longer than any password is allowed to be (checked without hashing it)."""
    # A character is at most 4 bytes: short strings need no encoding to be judged.
    return (
        len(password) * 4 > MAX_PASSWORD_BYTES and len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES
    )


class HashingBusy(RateLimited):
    """Every argon2 slot stayed busy for the whole wait; the caller should retry shortly."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            retry_after, "password_hashing", "too many passwords are being checked right now; try again shortly"
        )


class Passwords:
    """Hashes and checks passwords, at most ``max_concurrency`` at a time (one instance per identity process)."""

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        *,
        max_concurrency: int | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None
        self.max_concurrency = max_concurrency or default_concurrency()
        self.max_wait = max_wait
        self._slots = asyncio.Semaphore(self.max_concurrency)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One argon2 slot, waited for at most ``max_wait`` seconds.

        Raises:
            HashingBusy: no slot came free in time.

        """
        try:
            await asyncio.wait_for(self._slots.acquire(), self.max_wait)
        except TimeoutError:
            raise HashingBusy(1.0) from None
        try:
            yield
        finally:
            self._slots.release()

    async def hash(self, password: str) -> str:
        """The argon2id hash (PHC string) of a password.

        Raises:
            InvalidArgument: the password is longer than :data:`MAX_PASSWORD_BYTES`.
            HashingBusy: every slot stayed busy for ``max_wait`` seconds.

        """
        if too_long(password):
            raise InvalidArgument("the password is too long", {"password": f"at most {MAX_PASSWORD_BYTES} bytes"})
        normalised = normalise_password(password)
        async with self._slot():
            return await asyncio.to_thread(self._hasher.hash, normalised)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether the password matches the hash (a too-long password never does, and is not hashed).

        Raises:
            HashingBusy: every slot stayed busy for ``max_wait`` seconds.

        """
        if too_long(password):
            return False
        normalised = normalise_password(password)
        async with self._slot():
            return await asyncio.to_thread(self._verify, password_hash, normalised)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash uses weaker parameters than today's, and should be replaced on success."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def burn(self, password: str) -> None:
        """Spend the time of one verification on nothing (an unknown account)."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._dummy, password)
