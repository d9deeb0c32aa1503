"""Filter fields beyond columns: ordered enums, repeated values held in another table, dotted names."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import exists, select

from mesh.db import ServiceDatabase
from mesh.errors import InvalidArgument
from mesh.kit.filtering import FilterField, FilterSchema, compile_filter
from tests.mesh.kit.widgets import PartRow, WidgetRow, create_tables, widget

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)


def _has_part(part_id: str):
    return exists().where(PartRow.widget_id == WidgetRow.id, PartRow.id == part_id)


SCHEMA: FilterSchema = {
    # Stored as numbers that grow with the size, like the role ladder.
    "size": FilterField.enum(WidgetRow.size, {"SMALL": 1, "MEDIUM": 5, "LARGE": 9}, prefix="SIZE_", ordered=True),
    "state": FilterField.enum(WidgetRow.state, {"NEW": "new", "USED": "used"}),
    "parts": FilterField.has(_has_part),
    "parts.id": FilterField.has(_has_part),
}


@pytest.fixture
async def widgets(kit_database: ServiceDatabase) -> ServiceDatabase:
    await create_tables(kit_database.engine)
    async with kit_database.sessions.begin() as session:
        session.add_all(
            [
                widget("alpha", now=NOW, size=1),
                widget("beta", now=NOW, size=5),
                widget("gamma", now=NOW, size=9, state="used"),
            ]
        )
        await session.flush()
        session.add_all([PartRow(id="p1", widget_id="alpha"), PartRow(id="p2", widget_id="gamma")])
    return kit_database


async def _ids(database: ServiceDatabase, text: str) -> list[str]:
    clause = compile_filter(text, SCHEMA)
    query = select(WidgetRow.id).order_by(WidgetRow.id)
    if clause is not None:
        query = query.where(clause)
    async with database.sessions.begin() as session:
        return list((await session.execute(query)).scalars())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("size >= MEDIUM", ["beta", "gamma"]),
        ("size < SIZE_LARGE", ["alpha", "beta"]),
        ("size = SMALL", ["alpha"]),
        ('parts : "p1"', ["alpha"]),
        ('parts.id = "p2"', ["gamma"]),
        ('NOT parts : "p1"', ["beta", "gamma"]),
        ('parts : "p9"', []),
        ('size > SMALL AND parts : "p2"', ["gamma"]),
    ],
)
async def test_ordered_enums_and_repeated_values_select_the_right_rows(
    widgets: ServiceDatabase, text: str, expected: list[str]
):
    assert await _ids(widgets, text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("state > NEW", "takes only = and !="),
        ('parts > "p1"', "takes : with a quoted value"),
        ("parts : p1", "takes : with a quoted value"),
        ('parts.name = "p1"', "cannot filter on"),
    ],
)
def test_their_misuse_is_invalid_argument(text: str, problem: str):
    with pytest.raises(InvalidArgument) as raised:
        compile_filter(text, SCHEMA)
    assert problem in raised.value.field_violations["filter"]
