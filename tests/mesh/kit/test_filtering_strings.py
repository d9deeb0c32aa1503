"""Filters on strings: ``:`` as "contains" where a field opts in, and values that never reach SQL."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import select

from mesh.db import ServiceDatabase
from mesh.errors import InvalidArgument
from mesh.kit.filtering import FilterField, Kind, compile_filter
from tests.mesh.kit.widgets import SCHEMA, WidgetRow, create_tables, widget

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
CONTAINS = {
    **SCHEMA,
    "display_name": FilterField(Kind.STRING, WidgetRow.display_name, contains=True),
    "owner.name": FilterField(Kind.STRING, WidgetRow.display_name),  # a dotted field that is not a label
}


@pytest.fixture
async def widgets(kit_database: ServiceDatabase) -> ServiceDatabase:
    await create_tables(kit_database.engine)
    async with kit_database.sessions.begin() as session:
        session.add_all(
            [
                widget("alpha", now=NOW, display_name="ada@example.com"),
                widget("beta", now=NOW, display_name="bob@example.org"),
                widget("gamma", now=NOW, display_name="100%_sure"),
            ]
        )
    return kit_database


async def _ids(database: ServiceDatabase, text: str) -> list[str]:
    clause = compile_filter(text, CONTAINS)
    query = select(WidgetRow.id).order_by(WidgetRow.id)
    if clause is not None:
        query = query.where(clause)
    async with database.sessions.begin() as session:
        return list((await session.execute(query)).scalars())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('display_name : "@example.com"', ["alpha"]),
        ('display_name : "example"', ["alpha", "beta"]),
        ('display_name : "%_"', ["gamma"]),  # LIKE wildcards are literal
        ("display_name : *", ["alpha", "beta", "gamma"]),
        ('NOT display_name : "bob"', ["alpha", "gamma"]),
        ('owner.name = "bob@example.org"', ["beta"]),
        ('labels.team = "sales"', []),
    ],
)
async def test_contains_matches_substrings_where_the_field_opts_in(widgets: ServiceDatabase, text, expected):
    assert await _ids(widgets, text) == expected


def test_without_the_option_a_colon_still_takes_only_a_star():
    with pytest.raises(InvalidArgument):
        compile_filter('display_name : "x"', SCHEMA)


@pytest.mark.parametrize(
    "text",
    [
        'display_name = "a\\u0000b"',  # NUL: PostgreSQL refuses it in text
        'display_name = "\\ud800"',  # an unpaired surrogate cannot be encoded
        'display_name = "tab\\there"',
        'create_time > "9999-12-31T23:59:59-23:59"',  # past the calendar once moved to UTC
        'create_time > "0001-01-01T00:00:00+01:00"',  # before it
    ],
)
def test_values_that_cannot_be_stored_or_compared_are_invalid_arguments(text):
    with pytest.raises(InvalidArgument) as caught:
        compile_filter(text, CONTAINS)
    assert set(caught.value.field_violations) == {"filter"}
