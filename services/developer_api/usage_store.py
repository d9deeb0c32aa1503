"""Request log and hourly usage queries. Every function takes the session first."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from sqlalchemy import String, delete, literal, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit.filtering import FilterField, FilterSchema, Kind, parse_filter
from mesh.kit.keysets import newest_first
from mesh.kit.paging import Page, Position
from services.developer_api.models import ApiKeyRow, ApiKeyUsageRow, ApiRequestLogRow
from services.developer_api.usage import LOG_RETENTION, USAGE_RETENTION, Counters, KeyRef

# The key's full name, so that `api_key = "organizations/acme/api_keys/crm"` compares names.
_KEY_NAME = (
    literal("organizations/", String)
    + ApiRequestLogRow.organization_id
    + literal("/api_keys/", String)
    + ApiRequestLogRow.api_key_id
)

# The ListApiRequestLogs filter (AIP-160, mesh.kit.filtering).
LOG_FILTERS: FilterSchema = {
    "api_key": FilterField(Kind.STRING, _KEY_NAME),
    "method": FilterField(Kind.STRING, ApiRequestLogRow.method),
    "http_status": FilterField(Kind.INTEGER, ApiRequestLogRow.http_status),
    "grpc_code": FilterField.enum(ApiRequestLogRow.grpc_code, {code.name: code.name for code in grpc.StatusCode}),
    "request_id": FilterField(Kind.STRING, ApiRequestLogRow.request_id),
    "request_time": FilterField(Kind.TIMESTAMP, ApiRequestLogRow.request_time),
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


async def list_logs(
    session: AsyncSession, organization_id: str | None, filter_text: str, *, after: Position | None, limit: int
) -> Page[ApiRequestLogRow]:
    """Log entries newest first (``request_time``, then organisation and id), ``limit`` at a time.

    Raises:
        InvalidArgument: the filter or the position is malformed.

    """
    query = select(ApiRequestLogRow)
    if organization_id is not None:
        query = query.where(ApiRequestLogRow.organization_id == organization_id)
    parsed = parse_filter(filter_text, LOG_FILTERS)
    if parsed.clause is not None:
        query = query.where(parsed.clause)
    return await newest_first(
        session,
        query,
        time_column=ApiRequestLogRow.request_time,
        organization_column=ApiRequestLogRow.organization_id,
        id_column=ApiRequestLogRow.id,
        after=after,
        limit=limit,
    )


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
    return [((row.organization_id, row.api_key_id), row.hour_start, _counters(row)) for row in rows]
