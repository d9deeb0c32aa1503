"""Newest-first pages over (time, organisation, id), the order organisation-scoped lists use.

A list of resources under ``organizations/{organization}`` sorts newest first by a time
column, then by organisation and id: the id alone is unique only within an organisation,
so a listing across organisations (``organizations/-``) needs the organisation in the key
too. The page token's position is ``(time in µs, organisation, id)``
(:func:`mesh.kit.paging.time_key`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit import paging
from mesh.kit.paging import Page, Position


async def newest_first(
    session: AsyncSession,
    query: Select[Any],
    *,
    time_column: Any,
    organization_column: Any,
    id_column: Any,
    after: Position | None,
    limit: int,
) -> Page[Any]:
    """One page of ``query``, newest first by ``time_column``, then organisation and id (descending).

    Args:
        session: the transaction.
        query: the filtered selection of one mapped class, without order or limit.
        time_column: the time to sort by (``KeyRow.create_time``).
        organization_column: the organisation column (``KeyRow.organization_id``).
        id_column: the id column (``KeyRow.id``).
        after: the position of the previous page's last row (from its page token), or ``None``.
        limit: the page size.

    Raises:
        InvalidArgument: the position has another shape (a token of another listing).

    """
    keys = None
    if after is not None:
        micros, organization, item_id = paging.position_shape(after, int, str, str)
        keys = (paging.from_time_key(micros), organization, item_id)
    names = (time_column.key, organization_column.key, id_column.key)

    def position_of(row: Any) -> Position:
        moment, organization, item_id = (getattr(row, name) for name in names)
        return (paging.time_key(moment), organization, item_id)

    return await paging.keyset_page(
        session,
        query,
        keys=[time_column, organization_column, id_column],
        after=keys,
        limit=limit,
        position_of=position_of,
    )
