"""Queries on signing keys. Every function takes the session first."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import SigningKey

ACTIVE = "ACTIVE"
PREVIOUS = "PREVIOUS"
RETIRED = "RETIRED"


async def retire_due(session: AsyncSession, now: dt.datetime) -> None:
    """Move PREVIOUS keys whose retire time has passed to RETIRED."""
    await session.execute(
        update(SigningKey)
        .where(SigningKey.state == PREVIOUS, SigningKey.retire_time <= now)
        .values(state=RETIRED)
        .execution_options(synchronize_session=False)
    )


async def verifying_keys(session: AsyncSession) -> list[SigningKey]:
    """ACTIVE and PREVIOUS keys: the ACTIVE one first, then the most recently demoted."""
    query = select(SigningKey).where(SigningKey.state.in_((ACTIVE, PREVIOUS)))
    rows = list((await session.execute(query)).scalars())
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(rows, key=lambda k: (k.state != ACTIVE, -(k.deactivate_time or epoch).timestamp()))


async def active_key(session: AsyncSession) -> SigningKey | None:
    """The ACTIVE key, if there is one."""
    return (await session.execute(select(SigningKey).where(SigningKey.state == ACTIVE))).scalar_one_or_none()


async def get_key(session: AsyncSession, kid: str, *, for_update: bool = False) -> SigningKey | None:
    """The key with this kid (locked for the transaction if asked)."""
    query = select(SigningKey).where(SigningKey.kid == kid)
    return (await session.execute(query.with_for_update() if for_update else query)).scalar_one_or_none()


def retire(key: SigningKey, now: dt.datetime) -> None:
    """Make a key RETIRED now (revoked): it leaves the JWKS and verifies nothing more."""
    key.state = RETIRED
    key.deactivate_time = key.deactivate_time or now
    key.retire_time = now


async def add_key_after(session: AsyncSession, current: SigningKey, fresh: SigningKey) -> SigningKey:
    """Replace the ACTIVE key ``current`` by ``fresh`` (``current`` is retired, not demoted)."""
    retire(current, fresh.create_time)
    await session.flush()  # one ACTIVE key at a time
    return await add_key(session, fresh)


async def demote(session: AsyncSession, key: SigningKey, now: dt.datetime, retire_after: dt.timedelta) -> None:
    """Make the ACTIVE key PREVIOUS: it stops signing and retires once its last token has expired."""
    key.state = PREVIOUS
    key.deactivate_time = now
    key.retire_time = now + retire_after
    await session.flush()


async def add_key(session: AsyncSession, key: SigningKey) -> SigningKey:
    """Insert a key (flushes, so the one-ACTIVE index is checked now)."""
    session.add(key)
    await session.flush()
    return key


def keys_query(*, show_retired: bool) -> Select[SigningKey]:
    """Signing keys, unordered, for a keyset page."""
    query = select(SigningKey)
    return query if show_retired else query.where(SigningKey.state != RETIRED)
