"""``field:value`` on a field that declares what "holds the value" means (repeated fields)."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import select

from mesh.db import ServiceDatabase
from mesh.errors import InvalidArgument
from mesh.kit.filtering import FilterField, Kind, parse_filter
from tests.mesh.kit.widgets import SCHEMA, WidgetRow, create_tables, widget

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
# A stand-in for a repeated field: "holds" is a substring of the display name here.
WITH_HAS = {**SCHEMA, "part": FilterField(Kind.STRING, WidgetRow.display_name, holds=WidgetRow.display_name.contains)}


@pytest.fixture
async def widgets(kit_database: ServiceDatabase) -> ServiceDatabase:
    await create_tables(kit_database.engine)
    async with kit_database.sessions.begin() as session:
        session.add_all(
            [
                widget("alpha", now=NOW),
                widget("beta", now=NOW),
                widget("alpine", now=NOW, display_name="al_pha"),
            ]
        )
    return kit_database


async def _ids(database: ServiceDatabase, text: str) -> list[str]:
    parsed = parse_filter(text, WITH_HAS)
    query = select(WidgetRow.id).order_by(WidgetRow.id)
    if parsed.clause is not None:
        query = query.where(parsed.clause)
    async with database.sessions.begin() as session:
        return list((await session.execute(query)).scalars())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("part:ph", ["alpha", "alpine"]),
        ('part:"et"', ["beta"]),
        ("NOT part:ph AND part:*", ["beta"]),
    ],
)
async def test_has_compiles_the_fields_own_condition(widgets: ServiceDatabase, text: str, expected: list[str]):
    assert await _ids(widgets, text) == expected
    assert "part" in parse_filter(text, WITH_HAS).fields


def test_without_has_a_value_after_colon_is_still_refused():
    with pytest.raises(InvalidArgument) as caught:
        parse_filter("display_name:ph", WITH_HAS)
    assert "filter" in caught.value.field_violations
