"""Password hashing with argon2id (RFC 9106), off the event loop.

argon2-cffi's ``PasswordHasher()`` defaults are argon2id with RFC 9106's low-memory
profile. Hashing takes tens of milliseconds and 64 MiB, so it runs in a worker thread.
Unknown accounts are checked against a dummy hash, so the time a wrong e-mail takes
equals the time a wrong password takes.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.identity.domain import normalise_password


class Passwords:
    """Hashes and checks passwords."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """The argon2id hash (PHC string) of a password."""
        return await asyncio.to_thread(self._hasher.hash, normalise_password(password))

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether the password matches the hash."""
        return await asyncio.to_thread(self._verify, password_hash, normalise_password(password))

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
            self._dummy = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
        await self.verify(self._dummy, password)
