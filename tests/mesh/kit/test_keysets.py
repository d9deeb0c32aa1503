"""Newest-first keyset pages across organisations that reuse ids."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import select

from mesh.db import ServiceDatabase
from mesh.errors import InvalidArgument
from mesh.kit.keysets import newest_first
from tests.mesh.kit.widgets import WidgetRow, create_tables, widget

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)


async def _pages(database: ServiceDatabase, organization_id: str | None, limit: int) -> list[list[str]]:
    query = select(WidgetRow)
    if organization_id is not None:
        query = query.where(WidgetRow.organization_id == organization_id)
    pages, after = [], None
    async with database.sessions.begin() as session:
        while True:
            page = await newest_first(
                session,
                query,
                time_column=WidgetRow.create_time,
                organization_column=WidgetRow.organization_id,
                id_column=WidgetRow.id,
                after=after,
                limit=limit,
            )
            pages.append([f"{row.organization_id}/{row.id}" for row in page.items])
            if page.next_after is None:
                return pages
            after = page.next_after


async def test_pages_are_newest_first_and_ties_are_broken_by_organisation_then_id(kit_database: ServiceDatabase):
    await create_tables(kit_database.engine)
    async with kit_database.sessions.begin() as session:
        # Widget ids are unique here, so the same moment stands in for reused ids.
        session.add_all(
            [
                widget("w1", now=NOW, organization_id="acme"),
                widget("w2", now=NOW, organization_id="beta"),
                widget("w3", now=NOW + datetime.timedelta(seconds=1), organization_id="acme"),
            ]
        )
    assert await _pages(kit_database, None, 2) == [["acme/w3", "beta/w2"], ["acme/w1"]]
    assert await _pages(kit_database, "acme", 1) == [["acme/w3"], ["acme/w1"]]


async def test_a_position_of_another_shape_is_refused(kit_database: ServiceDatabase):
    await create_tables(kit_database.engine)
    async with kit_database.sessions.begin() as session:
        with pytest.raises(InvalidArgument):
            await newest_first(
                session,
                select(WidgetRow),
                time_column=WidgetRow.create_time,
                organization_column=WidgetRow.organization_id,
                id_column=WidgetRow.id,
                after=("not-a-time", "acme", "w1"),
                limit=5,
            )
