"""API key queries. Every function takes the session first; tenancy is a query condition.

A key is addressed by (organization_id, id): every point query names the organisation in
its WHERE clause, so a key of another organisation is indistinguishable from a missing one
(:func:`mesh.kit.tenancy.not_found`). Lists take ``organization_id=None`` ("every
organisation") only for platform principals. Changes are flushed at once
(:func:`mesh.kit.sql.flush`), so conflicts surface here as domain errors.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Collection

from sqlalchemy import ColumnElement, and_, case, delete, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import InvalidArgument
from mesh.kit import tenancy
from mesh.kit.filtering import FilterField, FilterSchema, Kind, parse_filter
from mesh.kit.keysets import newest_first
from mesh.kit.paging import Page, Position
from mesh.kit.sql import flush
from services.developer_api.domain import Environment, KeySettings, KeyState, KeyType, key_name
from services.developer_api.models import ApiKeyRow, SealedSecretRow

_CONCURRENT = "the API key was changed concurrently; read it again and retry"


def _active(now: datetime.datetime) -> ColumnElement[bool]:
    return and_(
        ApiKeyRow.state == KeyState.ACTIVE.value,
        or_(ApiKeyRow.expire_time.is_(None), ApiKeyRow.expire_time > now),
    )


def effective_state(now: datetime.datetime) -> ColumnElement[str]:
    """A key's state as readers see it, in SQL: an ACTIVE key past its expiry is EXPIRED."""
    expired = and_(ApiKeyRow.state == KeyState.ACTIVE.value, ApiKeyRow.expire_time <= now)
    return case((expired, literal(KeyState.EXPIRED.value)), else_=ApiKeyRow.state)


def _holds_scope(scope: str) -> ColumnElement[bool]:
    # Scopes are a JSON list of permission names, which never need escaping; a key with
    # "*" holds every scope.
    if not scope.replace(".", "").replace("_", "").isalnum():
        raise InvalidArgument("unsupported filter: scopes: takes a permission name", {"filter": "scopes:calls.get"})
    quoted = json.dumps(scope).replace("_", "\\_")
    return or_(ApiKeyRow.scopes.like(f"%{quoted}%", escape="\\"), ApiKeyRow.scopes == json.dumps(["*"]))


def key_filters(now: datetime.datetime) -> FilterSchema:
    """The ListApiKeys filter (AIP-160, :mod:`mesh.kit.filtering`); ``state`` counts expiry at ``now``."""
    return {
        "state": FilterField.enum(effective_state(now), {s.value: s.value for s in KeyState}, prefix="API_KEY_STATE_"),
        "environment": FilterField.enum(
            ApiKeyRow.environment, {e.value: e.value for e in Environment}, prefix="API_KEY_ENVIRONMENT_"
        ),
        "key_type": FilterField.enum(ApiKeyRow.key_type, {t.value: t.value for t in KeyType}, prefix="API_KEY_TYPE_"),
        "prefix": FilterField(Kind.STRING, ApiKeyRow.prefix),
        "display_name": FilterField(Kind.STRING, ApiKeyRow.display_name),
        "scopes": FilterField(Kind.STRING, ApiKeyRow.scopes, holds=_holds_scope),
        "labels": FilterField(Kind.LABELS, ApiKeyRow.labels),
        "create_time": FilterField(Kind.TIMESTAMP, ApiKeyRow.create_time),
    }


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
    owner: str = "",
) -> ApiKeyRow:
    """Store a new ACTIVE key.

    Raises:
        AlreadyExists: the organisation already has a key with this id.

    """
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
        labels=dict(settings.labels),
        state=KeyState.ACTIVE.value,
        expire_time=settings.expire_time,
        last_used_time=None,
        last_used_address="",
        revoke_time=None,
        revoke_reason="",
        rotated_from=rotated_from,
        rotated_to="",
        creator_role=creator_role,
        owner=owner or creator,
    )
    row.stamp_created(creator, now)
    session.add(row)
    # The secret hash never collides: a unique conflict is the id.
    await flush(session, exists=f"{key_name(organization_id, key_id)} already exists")
    return row


async def find_key(
    session: AsyncSession, organization_id: str, key_id: str, *, for_update: bool = False
) -> ApiKeyRow | None:
    """The key with this id in this organisation, or ``None`` (a primary-key point read)."""
    return await session.get(ApiKeyRow, (organization_id, key_id), with_for_update=for_update)


async def get_key(session: AsyncSession, organization_id: str, key_id: str) -> ApiKeyRow:
    """Like :func:`find_key`, but a missing key is an error.

    Raises:
        NotFound: the organisation has no such key.

    """
    row = await find_key(session, organization_id, key_id)
    if row is None:
        raise tenancy.not_found(key_name(organization_id, key_id))
    return row


async def save_key(session: AsyncSession) -> None:
    """Write a key's changes, bumping its revision.

    Raises:
        Aborted: another transaction changed the key since this one read it.

    """
    await flush(session, stale=_CONCURRENT)


async def find_by_hash(session: AsyncSession, secret_hash: str) -> ApiKeyRow | None:
    """The key whose secret hashes to this value, if any."""
    return (await session.execute(select(ApiKeyRow).where(ApiKeyRow.secret_hash == secret_hash))).scalar_one_or_none()


def state_condition(states: Collection[KeyState], now: datetime.datetime) -> ColumnElement[bool]:
    """Rows whose effective state (expiry applied) is one of ``states``."""
    return effective_state(now).in_([state.value for state in states])


async def active_keys_of_owner(
    session: AsyncSession, organization_id: str, owner: str, now: datetime.datetime
) -> list[ApiKeyRow]:
    """The organisation's ACTIVE keys a member owns, locked for the change.

    Keys from before owners were kept (``owner`` empty) belong to their creator.
    """
    query = (
        select(ApiKeyRow)
        .where(
            ApiKeyRow.organization_id == organization_id,
            or_(ApiKeyRow.owner == owner, and_(ApiKeyRow.owner == "", ApiKeyRow.creator == owner)),
            _active(now),
        )
        .order_by(ApiKeyRow.id)
        .with_for_update()
    )
    return list((await session.scalars(query)).all())


async def count_active(session: AsyncSession, organization_id: str, now: datetime.datetime) -> int:
    """How many ACTIVE, unexpired keys an organisation has."""
    query = select(func.count()).select_from(ApiKeyRow)
    query = query.where(ApiKeyRow.organization_id == organization_id, _active(now))
    return int((await session.execute(query)).scalar_one())


async def list_keys(
    session: AsyncSession,
    organization_id: str | None,
    filter_text: str,
    *,
    show_inactive: bool,
    now: datetime.datetime,
    after: Position | None,
    limit: int,
) -> Page[ApiKeyRow]:
    """Keys newest first (``create_time``, then organisation and id, descending), ``limit`` at a time.

    Args:
        session: the transaction.
        organization_id: whose keys; ``None`` lists every organisation.
        filter_text: an AIP-160 filter over :func:`key_filters`.
        show_inactive: include EXPIRED and REVOKED keys when the filter names no state (a
            filter on state decides by itself).
        now: the moment expiry is judged at.
        after: the position of the previous page's last key (``(create_time µs, organisation, id)``).
        limit: the page size.

    Raises:
        InvalidArgument: the filter or the position is malformed.

    """
    query = select(ApiKeyRow)
    if organization_id is not None:
        query = query.where(ApiKeyRow.organization_id == organization_id)
    parsed = parse_filter(filter_text, key_filters(now))
    if parsed.clause is not None:
        query = query.where(parsed.clause)
    if not show_inactive and "state" not in parsed.fields:
        query = query.where(_active(now))
    return await newest_first(
        session,
        query,
        time_column=ApiKeyRow.create_time,
        organization_column=ApiKeyRow.organization_id,
        id_column=ApiKeyRow.id,
        after=after,
        limit=limit,
    )


async def touch_last_used(session: AsyncSession, row: ApiKeyRow, minute: datetime.datetime, address: str) -> bool:
    """Record a use at ``minute`` unless one at that minute is already recorded; whether it wrote.

    A use is not a change of the key: the revision (and so the etag) stays.
    """
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


# -- secrets shown again on a replayed create or rotate -------------------------------------


async def keep_sealed_secret(
    session: AsyncSession, *, organization_id: str, api_key_id: str, sealed: bytes, expire_time: datetime.datetime
) -> None:
    """Keep the sealed secret of a key a request with a request_id created, until ``expire_time``."""
    session.add(
        SealedSecretRow(
            organization_id=organization_id, api_key_id=api_key_id, sealed_secret=sealed, expire_time=expire_time
        )
    )
    await flush(session)


async def find_sealed_secret(
    session: AsyncSession, organization_id: str, api_key_id: str, now: datetime.datetime
) -> bytes | None:
    """The sealed secret of a key, while it is kept."""
    row = await session.get(SealedSecretRow, (organization_id, api_key_id))
    if row is None or row.expire_time <= now:
        return None
    return row.sealed_secret


async def wipe_expired_secrets(session: AsyncSession, now: datetime.datetime) -> None:
    """Forget sealed secrets after their window."""
    await session.execute(delete(SealedSecretRow).where(SealedSecretRow.expire_time <= now))
