"""The signing keys in memory: the ACTIVE key that signs, and the public keys that verify.

Loaded from the store, refreshed every :data:`REFRESH_SECONDS` (so a rotation made by
another identity process is picked up) and at once after a rotation in this one. The
first load of an empty store creates the first ACTIVE key; a configured key file
(``VOCELIO_JWT_SIGNING_KEY_FILE``) is stored (sealed) and made ACTIVE instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import Unavailable
from services.identity import signing, store_keys
from services.identity.models import SigningKey

REFRESH_SECONDS = 30.0
SOURCE_GENERATED = "generated"
SOURCE_FILE = "file"


@dataclasses.dataclass(frozen=True, slots=True)
class KeySnapshot:
    """What the keyring holds after a load."""

    active: signing.KeyMaterial
    jwks: tuple[dict[str, str], ...]


class Keyring:
    """Signing keys for one identity process."""

    def __init__(self, key_encryption_key: bytes, file_key: signing.KeyMaterial | None = None) -> None:
        self._kek = key_encryption_key
        self.file_key = file_key
        self._snapshot: KeySnapshot | None = None
        self._verifiers: dict[str, jwt.PyJWK] = {}
        self._loaded_at = -float("inf")

    @property
    def loaded(self) -> bool:
        """Whether a load has succeeded."""
        return self._snapshot is not None

    @property
    def stale(self) -> bool:
        """Whether it is time to reload."""
        return time.monotonic() - self._loaded_at > REFRESH_SECONDS

    def postpone(self) -> None:
        """Keep the loaded keys for another refresh period (the store could not be read)."""
        self._loaded_at = time.monotonic()

    def active(self) -> signing.KeyMaterial:
        """The key that signs new tokens.

        Raises:
            Unavailable: the keys have not been loaded yet (the database is not reachable).

        """
        if self._snapshot is None:
            raise Unavailable("the signing keys are not loaded yet; try again shortly")
        return self._snapshot.active

    def jwks(self) -> tuple[dict[str, str], ...]:
        """The public keys of the ACTIVE and PREVIOUS keys, ACTIVE first."""
        if self._snapshot is None:
            raise Unavailable("the signing keys are not loaded yet; try again shortly")
        return self._snapshot.jwks

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The verification key with this kid (``mesh.tokens.KeySource``)."""
        return self._verifiers.get(kid)

    async def load(self, session: AsyncSession, now: dt.datetime, retire_after: dt.timedelta) -> None:
        """Read the keys, creating or installing the ACTIVE key where needed."""
        await store_keys.retire_due(session, now)
        if self.file_key is not None:
            await self._install_file_key(session, self.file_key, now, retire_after)
        elif await store_keys.active_key(session) is None:
            await store_keys.add_key(session, self.new_row(signing.generate(), now, creator="identity"))
        rows = await store_keys.verifying_keys(session)
        active_row = rows[0]
        active = signing.load_sealed(active_row.sealed_private_key, self._kek, active_row.kid)
        jwks = tuple(json.loads(row.public_jwk) for row in rows)
        self._snapshot = KeySnapshot(active, jwks)
        self._verifiers = {entry["kid"]: jwt.PyJWK(entry) for entry in jwks}
        self._loaded_at = time.monotonic()

    def new_row(
        self,
        key: signing.KeyMaterial,
        now: dt.datetime,
        *,
        creator: str,
        source: str = SOURCE_GENERATED,
    ) -> SigningKey:
        """A new ACTIVE key row with the private key sealed."""
        return SigningKey(
            kid=key.kid,
            algorithm=key.algorithm,
            state=store_keys.ACTIVE,
            public_jwk=json.dumps(key.jwk, sort_keys=True),
            sealed_private_key=signing.seal(key.private_pem(), self._kek, key.kid),
            source=source,
            create_time=now,
            activate_time=now,
            creator=creator,
        )

    async def _install_file_key(
        self, session: AsyncSession, key: signing.KeyMaterial, now: dt.datetime, retire_after: dt.timedelta
    ) -> None:
        current = await store_keys.active_key(session)
        if current is not None and current.kid == key.kid:
            return
        if current is not None:
            await store_keys.demote(session, current, now, retire_after)
        stored = await store_keys.get_key(session, key.kid)
        if stored is None:
            await store_keys.add_key(session, self.new_row(key, now, creator="configuration", source=SOURCE_FILE))
            return
        stored.state = store_keys.ACTIVE
        stored.activate_time = now
        stored.deactivate_time = None
        stored.retire_time = None
        await session.flush()
