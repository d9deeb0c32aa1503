"""API key queries. Every function takes the session first; tenancy is a query condition.

A key is addressed by (organization_id, id): every point query names the organisation in
its WHERE clause, so a key of another organisation is indistinguishable from a missing one.
Lists take ``organization_id=None`` ("every organisation") only for platform principals.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Collection

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import Aborted, AlreadyExists
from services.developer_api.domain import KeySettings, KeyState, key_name, not_found
from services.developer_api.models import ApiKeyRow, IdempotentRequestRow, utc


async def insert_key(
    session: AsyncSession,
    *,
    key_id: str,
    organization_id: str,
    settings: KeySettings,
    secret_hash: str,
    prefix: str,
    creator: str,
    creator_role: str,
    now: datetime.datetime,
    rotated_from: str = "",
) -> ApiKeyRow:
    """Store a new ACTIVE key.

    Raises:
        AlreadyExists: the organisation already has a key with this id.

    """
    if await session.get(ApiKeyRow, (organization_id, key_id)) is not None:
        raise AlreadyExists(f"an API key with id {key_id} already exists")
    row = ApiKeyRow(
        id=key_id,
        organization_id=organization_id,
        display_name=settings.display_name,
        prefix=prefix,
        secret_hash=secret_hash,
        key_type=settings.key_type.value,
        environment=settings.environment.value,
        scopes=json.dumps(list(settings.scopes)),
        restrictions=json.dumps(settings.restrictions.as_dict(), sort_keys=True),
        labels=json.dumps(settings.labels, sort_keys=True),
        state=KeyState.ACTIVE.value,
        expire_time=settings.expire_time,
        last_used_time=None,
        last_used_address="",
        revoke_time=None,
        revoke_reason="",
        rotated_from=rotated_from,
        rotated_to="",
        creator=creator,
        creator_role=creator_role,
        last_modifier=creator,
        create_time=now,
        update_time=now,
        version=1,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        # Another request took the same id a moment ago (the secret hash never collides).
        raise AlreadyExists(f"an API key with id {key_id} already exists") from None
    return row


async def get_key(session: AsyncSession, organization_id: str, key_id: str, *, for_update: bool = False) -> ApiKeyRow:
    """A key of the organisation.

    Raises:
        NotFound: the organisation has no such key.

    """
    query = select(ApiKeyRow).where(ApiKeyRow.organization_id == organization_id, ApiKeyRow.id == key_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise not_found(key_name(organization_id, key_id))
    return row


async def find_by_hash(session: AsyncSession, secret_hash: str) -> ApiKeyRow | None:
    """The key whose secret hashes to this value, if any."""
    return (await session.execute(select(ApiKeyRow).where(ApiKeyRow.secret_hash == secret_hash))).scalar_one_or_none()


def _active(now: datetime.datetime) -> ColumnElement[bool]:
    return and_(
        ApiKeyRow.state == KeyState.ACTIVE.value,
        or_(ApiKeyRow.expire_time.is_(None), ApiKeyRow.expire_time > now),
    )


def state_condition(states: Collection[KeyState], now: datetime.datetime) -> ColumnElement[bool]:
    """Rows whose effective state (expiry applied) is one of ``states``."""
    conditions: list[ColumnElement[bool]] = []
    if KeyState.ACTIVE in states:
        conditions.append(_active(now))
    if KeyState.EXPIRED in states:
        conditions.append(
            or_(
                ApiKeyRow.state == KeyState.EXPIRED.value,
                and_(ApiKeyRow.state == KeyState.ACTIVE.value, ApiKeyRow.expire_time <= now),
            )
        )
    if KeyState.REVOKED in states:
        conditions.append(ApiKeyRow.state == KeyState.REVOKED.value)
    return or_(*conditions) if conditions else ApiKeyRow.id.is_(None)


async def count_active(session: AsyncSession, organization_id: str, now: datetime.datetime) -> int:
    """How many ACTIVE, unexpired keys an organisation has."""
    query = select(func.count()).select_from(ApiKeyRow)
    query = query.where(ApiKeyRow.organization_id == organization_id, _active(now))
    return int((await session.execute(query)).scalar_one())


async def list_keys(
    session: AsyncSession,
    organization_id: str | None,
    *,
    states: Collection[KeyState],
    now: datetime.datetime,
    after: tuple[datetime.datetime, str] | None,
    limit: int,
) -> list[ApiKeyRow]:
    """Keys newest first, after a (create_time, id) position."""
    query = select(ApiKeyRow).where(state_condition(states, now))
    if organization_id is not None:
        query = query.where(ApiKeyRow.organization_id == organization_id)
    if after is not None:
        created, key_id = after
        query = query.where(
            or_(ApiKeyRow.create_time < created, and_(ApiKeyRow.create_time == created, ApiKeyRow.id < key_id))
        )
    query = query.order_by(ApiKeyRow.create_time.desc(), ApiKeyRow.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def touch_last_used(session: AsyncSession, row: ApiKeyRow, minute: datetime.datetime, address: str) -> bool:
    """Record a use at ``minute`` unless one at that minute is already recorded; whether it wrote."""
    result = await session.execute(
        update(ApiKeyRow)
        .where(
            ApiKeyRow.organization_id == row.organization_id,
            ApiKeyRow.id == row.id,
            or_(ApiKeyRow.last_used_time.is_(None), ApiKeyRow.last_used_time < minute),
        )
        .values(last_used_time=minute, last_used_address=address[:64])
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def bump(row: ApiKeyRow, modifier: str, now: datetime.datetime) -> None:
    """Mark a row changed by ``modifier`` (a new etag)."""
    row.last_modifier = modifier
    row.update_time = now
    row.version += 1


# -- idempotent create and rotate -----------------------------------------------------------


async def wipe_expired_requests(session: AsyncSession, now: datetime.datetime) -> None:
    """Forget request ids, and the sealed secrets they kept, after their window."""
    await session.execute(delete(IdempotentRequestRow).where(IdempotentRequestRow.expire_time <= now))


async def find_request(
    session: AsyncSession, organization_id: str, method: str, request_id: str, now: datetime.datetime
) -> IdempotentRequestRow | None:
    """A request id seen within its window, for this organisation and method."""
    row = await session.get(IdempotentRequestRow, (organization_id, method, request_id))
    if row is None or utc(row.expire_time) <= now:
        return None
    return row


async def claim_request(
    session: AsyncSession,
    *,
    organization_id: str,
    method: str,
    request_id: str,
    fingerprint: str,
    api_key_id: str,
    sealed_secret: bytes,
    expire_time: datetime.datetime,
) -> None:
    """Remember a request id before doing its work, so a concurrent retry cannot do it twice.

    Raises:
        Aborted: a concurrent request with the same id got there first; retrying returns its result.

    """
    session.add(
        IdempotentRequestRow(
            organization_id=organization_id,
            method=method,
            request_id=request_id,
            fingerprint=fingerprint,
            api_key_id=api_key_id,
            sealed_secret=sealed_secret,
            expire_time=expire_time,
        )
    )
    try:
        await session.flush()
    except IntegrityError:
        raise Aborted("a request with this request_id is in progress; retry it") from None
