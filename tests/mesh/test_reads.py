"""Point reads (ServiceDatabase.point_read) against real databases: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime
import enum
import sqlite3

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.sql import JsonDocument, UtcDateTime

T0 = datetime.datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=datetime.UTC)


class Colour(enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


class Base(DeclarativeBase):
    pass


class ThingRow(Base):
    __tablename__ = "things"

    id: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(20))
    colour: Mapped[Colour] = mapped_column(sa.Enum(Colour, native_enum=False, length=8))
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument)
    created: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    count: Mapped[int] = mapped_column(sa.Integer)


BY_ID = sa.select(ThingRow.id, ThingRow.colour, ThingRow.labels, ThingRow.created, ThingRow.count).where(
    ThingRow.id == sa.bindparam("id"), ThingRow.owner == sa.bindparam("owner")
)


@pytest.fixture
async def database(settings: Settings):
    database = ServiceDatabase(settings, "reads")
    async with database.engine.begin() as connection:
        if database.schema:
            await connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        await connection.run_sync(Base.metadata.create_all)
    async with database.sessions.begin() as session:
        session.add(ThingRow(id="t1", owner="o1", colour=Colour.BLUE, labels={"a": "b"}, created=T0, count=3))
    yield database
    await database.dispose()


async def test_a_row_comes_back_typed_like_the_orm_returns_it(database):
    row = await database.point_read(BY_ID, {"id": "t1", "owner": "o1"})
    assert row == ("t1", Colour.BLUE, {"a": "b"}, T0, 3)
    assert row is not None and row[3].tzinfo is not None


async def test_no_row_is_none(database):
    assert await database.point_read(BY_ID, {"id": "t1", "owner": "someone else"}) is None
    assert await database.point_read(BY_ID, {"id": "t2", "owner": "o1"}) is None


async def test_a_missing_parameter_is_an_error(database):
    with pytest.raises(KeyError):
        await database.point_read(BY_ID, {"id": "t1"})


async def test_reads_see_every_commit(database):
    for count in (4, 5):
        async with database.sessions.begin() as session:
            (await session.get(ThingRow, "t1")).count = count
        row = await database.point_read(BY_ID, {"id": "t1", "owner": "o1"})
        assert row is not None and row[4] == count


async def test_many_concurrent_reads_share_the_connections(database):
    rows = await asyncio.gather(*(database.point_read(BY_ID, {"id": "t1", "owner": "o1"}) for _ in range(25)))
    assert {row[0] for row in rows if row is not None} == {"t1"}
    assert len(rows) == 25


async def test_reads_work_again_after_dispose(database):
    await database.dispose()
    row = await database.point_read(BY_ID, {"id": "t1", "owner": "o1"})
    assert row is not None and row[0] == "t1"


async def test_a_locked_sqlite_file_is_read_through_the_engine_instead_of_blocking(sqlite_settings):
    database = ServiceDatabase(sqlite_settings, "reads_locked")
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        async with database.sessions.begin() as session:
            session.add(ThingRow(id="t1", owner="o1", colour=Colour.RED, labels={}, created=T0, count=1))
        assert await database.point_read(BY_ID, {"id": "t1", "owner": "o1"}) is not None
        # A connection in exclusive locking mode (it needs the file to itself) keeps every other one out.
        await database.dispose()
        blocker = sqlite3.connect(str(sqlite_settings.var_dir / "reads_locked.sqlite3"), isolation_level=None)
        blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
        blocker.execute("UPDATE things SET count = 2")
        reading = asyncio.create_task(database.point_read(BY_ID, {"id": "t1", "owner": "o1"}))
        await asyncio.sleep(0.2)
        assert not reading.done()  # waiting on the engine's thread, while this loop kept running
        blocker.execute("PRAGMA locking_mode=NORMAL")
        blocker.execute("SELECT count FROM things")  # the lock goes with the next access
        blocker.close()
        row = await asyncio.wait_for(reading, 10)
        assert row is not None and row[1] is Colour.RED and row[4] == 2
    finally:
        await database.dispose()
