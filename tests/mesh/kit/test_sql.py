from __future__ import annotations

import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mesh.db import ServiceDatabase
from mesh.errors import Aborted, AlreadyExists, FailedPrecondition
from mesh.kit import etags
from mesh.kit.sql import flush, timestamp
from tests.mesh.kit.widgets import PartRow, WidgetRow, create_tables, widget

NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


@pytest.fixture
async def database(kit_database: ServiceDatabase) -> ServiceDatabase:
    await create_tables(kit_database.engine)
    return kit_database


async def test_times_come_back_aware_utc_and_naive_ones_are_refused(database: ServiceDatabase):
    paris = datetime.timezone(datetime.timedelta(hours=2))
    async with database.sessions.begin() as session:
        session.add(widget("alpha", now=NOW.astimezone(paris)))
    async with database.sessions.begin() as session:
        row = (await session.execute(select(WidgetRow))).scalar_one()
    assert row.create_time == NOW
    assert row.create_time.tzinfo == datetime.UTC
    with pytest.raises(Exception, match="naive datetime"):
        await _add(database, widget("beta", now=NOW.replace(tzinfo=None)))


async def test_unique_and_foreign_key_conflicts_become_domain_errors(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        session.add(widget("alpha", now=NOW))
    with pytest.raises(AlreadyExists, match="organizations/acme/widgets/alpha already exists"):
        await _add(database, widget("alpha", now=NOW), exists="organizations/acme/widgets/alpha already exists")
    with pytest.raises(FailedPrecondition, match="no such widget"):
        await _add(database, PartRow(id="p1", widget_id="missing"), missing_reference="no such widget")
    with pytest.raises(IntegrityError):  # unmapped conflicts propagate unchanged
        await _add(database, PartRow(id="p2", widget_id="missing"), exists="not this one")


async def _add(database: ServiceDatabase, row: object, **mapping: str) -> None:
    async with database.sessions.begin() as session:
        session.add(row)
        await flush(session, **mapping)


async def test_revisions_lock_optimistically_and_feed_etags_and_audit_info(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        session.add(widget("alpha", now=NOW))
    async with database.sessions.begin() as first, database.sessions.begin() as second:
        mine = await first.get(WidgetRow, "alpha")
        theirs = await second.get(WidgetRow, "alpha")
        assert mine is not None and theirs is not None
        before = mine.etag_for("organizations/acme/widgets/alpha")
        mine.display_name = "Mine"
        mine.stamp_changed("users/u2", NOW + datetime.timedelta(minutes=1))
        await flush(first, stale="changed concurrently")
        assert mine.revision == 2
        assert mine.etag_for("organizations/acme/widgets/alpha") != before
        assert before == etags.etag("organizations/acme/widgets/alpha", NOW, 1)
        await first.commit()
        theirs.display_name = "Theirs"
        with pytest.raises(Aborted, match="changed concurrently"):
            await flush(second, stale="changed concurrently")
        await second.rollback()
    async with database.sessions.begin() as session:
        row = await session.get(WidgetRow, "alpha")
        assert row is not None
        info = row.audit_info()
    assert (info.creator, info.last_modifier) == ("users/u1", "users/u2")
    assert info.create_time == timestamp(NOW)
    assert info.update_time == timestamp(NOW + datetime.timedelta(minutes=1))
