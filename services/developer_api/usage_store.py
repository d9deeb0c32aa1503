"""Request log and hourly usage queries. Every function takes the session first."""

from __future__ import annotations

import datetime
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.developer_api.listing import Condition
from services.developer_api.models import ApiKeyRow, ApiKeyUsageRow, ApiRequestLogRow, utc
from services.developer_api.usage import LOG_RETENTION, USAGE_RETENTION, Counters, KeyRef

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _insert(session: AsyncSession, table: Any) -> Any:
    """An INSERT that supports ``ON CONFLICT DO NOTHING`` on the session's backend."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


async def key_environments(session: AsyncSession, keys: Iterable[KeyRef]) -> dict[KeyRef, str]:
    """The environment of each of these keys that exists."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(ApiKeyRow.organization_id, ApiKeyRow.id, ApiKeyRow.environment).where(
            tuple_(ApiKeyRow.organization_id, ApiKeyRow.id).in_(wanted)
        )
    )
    return {(organization_id, key_id): environment for organization_id, key_id, environment in rows}


async def insert_logs(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """Insert log rows, skipping request ids their organisation already stored.

    Returns:
        The (organization id, request id) pairs actually inserted.

    """
    if not rows:
        return set()
    statement = (
        _insert(session, ApiRequestLogRow)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["organization_id", "request_id"])
        .returning(ApiRequestLogRow.organization_id, ApiRequestLogRow.request_id)
    )
    return {(organization_id, request_id) for organization_id, request_id in await session.execute(statement)}


async def add_usage(session: AsyncSession, *, key: KeyRef, hour: datetime.datetime, counters: Counters) -> None:
    """Add traffic to a key's hour (the row is created on first use and locked while updated)."""
    organization_id, api_key_id = key
    await session.execute(
        _insert(session, ApiKeyUsageRow)
        .values(
            organization_id=organization_id,
            api_key_id=api_key_id,
            hour_start=hour,
            request_count=0,
            client_error_count=0,
            server_error_count=0,
            throttled_count=0,
            latency_histogram="[]",
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "api_key_id", "hour_start"])
    )
    query = (
        select(ApiKeyUsageRow)
        .where(
            ApiKeyUsageRow.organization_id == organization_id,
            ApiKeyUsageRow.api_key_id == api_key_id,
            ApiKeyUsageRow.hour_start == hour,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(query)).scalar_one()
    total = _counters(row)
    total.merge(counters)
    row.request_count = total.request_count
    row.client_error_count = total.client_error_count
    row.server_error_count = total.server_error_count
    row.throttled_count = total.throttled_count
    row.latency_histogram = json.dumps(total.histogram)


def _counters(row: ApiKeyUsageRow) -> Counters:
    return Counters(
        request_count=row.request_count,
        client_error_count=row.client_error_count,
        server_error_count=row.server_error_count,
        throttled_count=row.throttled_count,
        histogram=list(json.loads(row.latency_histogram)),
    )


async def prune(session: AsyncSession, now: datetime.datetime) -> None:
    """Drop log entries older than 30 days and usage older than 400 days."""
    await session.execute(delete(ApiRequestLogRow).where(ApiRequestLogRow.request_time < now - LOG_RETENTION))
    await session.execute(delete(ApiKeyUsageRow).where(ApiKeyUsageRow.hour_start < now - USAGE_RETENTION))


def log_condition(condition: Condition) -> ColumnElement[bool]:
    """The SQL form of one parsed log filter condition (fields and operators checked, api_key parsed)."""
    compare = _COMPARE[condition.op]
    column: Any
    value: Any = condition.value
    if condition.field == "api_key":
        # The value is "organization/key" here: the servicer parsed the name.
        organization_id, _, key_id = value.partition("/")
        return compare(tuple_(ApiRequestLogRow.organization_id, ApiRequestLogRow.api_key_id), (organization_id, key_id))  # type: ignore[no-any-return]
    if condition.field == "http_status":
        column, value = ApiRequestLogRow.http_status, int(value)
    elif condition.field == "request_time":
        column, value = ApiRequestLogRow.request_time, datetime.datetime.fromisoformat(value)
    else:
        column = getattr(ApiRequestLogRow, condition.field)
    result: ColumnElement[bool] = compare(column, value)
    return result


async def list_logs(
    session: AsyncSession,
    organization_id: str | None,
    *,
    conditions: Sequence[ColumnElement[bool]],
    after: tuple[datetime.datetime, str] | None,
    limit: int,
) -> list[ApiRequestLogRow]:
    """Log entries newest first, after a (request_time, id) position."""
    query = select(ApiRequestLogRow).where(*conditions)
    if organization_id is not None:
        query = query.where(ApiRequestLogRow.organization_id == organization_id)
    if after is not None:
        moment, log_id = after
        query = query.where(
            or_(
                ApiRequestLogRow.request_time < moment,
                and_(ApiRequestLogRow.request_time == moment, ApiRequestLogRow.id < log_id),
            )
        )
    query = query.order_by(ApiRequestLogRow.request_time.desc(), ApiRequestLogRow.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def usage_hours(
    session: AsyncSession,
    organization_id: str,
    api_key_id: str | None,
    start: datetime.datetime,
    end: datetime.datetime,
) -> list[tuple[KeyRef, datetime.datetime, Counters]]:
    """Hourly counters in ``[start, end)``, for one key or every key of the organisation."""
    query = select(ApiKeyUsageRow).where(
        ApiKeyUsageRow.organization_id == organization_id,
        ApiKeyUsageRow.hour_start >= start,
        ApiKeyUsageRow.hour_start < end,
    )
    if api_key_id is not None:
        query = query.where(ApiKeyUsageRow.api_key_id == api_key_id)
    rows = (await session.execute(query)).scalars()
    return [((row.organization_id, row.api_key_id), utc(row.hour_start), _counters(row)) for row in rows]
