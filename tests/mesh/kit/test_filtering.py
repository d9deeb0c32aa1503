from __future__ import annotations

import datetime

import pytest
from sqlalchemy import select

from mesh.db import ServiceDatabase
from mesh.errors import InvalidArgument
from mesh.kit.filtering import FILTER_MAX, compile_filter, parse_filter
from tests.mesh.kit.widgets import SCHEMA, WidgetRow, create_tables, widget

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)


@pytest.fixture
async def widgets(kit_database: ServiceDatabase) -> ServiceDatabase:
    await create_tables(kit_database.engine)
    async with kit_database.sessions.begin() as session:
        session.add_all(
            [
                widget("alpha", now=NOW, state="new", size=1, labels={"team": "sales", "tier": "gold"}),
                widget("beta", now=NOW + datetime.timedelta(hours=1), state="used", size=5, labels={"team": "ops"}),
                widget("gamma", now=NOW + datetime.timedelta(hours=2), state="used", size=9, active=False),
                widget("alpine", now=NOW + datetime.timedelta(hours=3), display_name="al_pha", size=3, seen_time=NOW),
            ]
        )
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
        ("", ["alpha", "alpine", "beta", "gamma"]),
        ("state = USED", ["beta", "gamma"]),
        ('state = "WIDGET_STATE_NEW"', ["alpha", "alpine"]),
        ("state != NEW AND size > 5", ["gamma"]),
        ("size >= 3 AND size <= 5", ["alpine", "beta"]),
        ("size < 2 OR size > 8", ["alpha", "gamma"]),
        ("active = false", ["gamma"]),
        ("NOT active = true", ["gamma"]),
        ("-(state = USED)", ["alpha", "alpine"]),
        ('labels.team = "sales"', ["alpha"]),
        ('labels.team != "sales"', ["alpine", "beta", "gamma"]),
        ("labels:tier", ["alpha"]),
        ("labels.team:*", ["alpha", "beta"]),
        ('display_name = "al*"', ["alpha", "alpine"]),
        ('display_name = "al_*"', ["alpine"]),
        ('display_name = "alpha"', ["alpha"]),
        ("seen_time:*", ["alpine"]),
        ('create_time > "2026-06-01T12:30:00Z"', ["alpine", "beta", "gamma"]),
        ('create_time <= "2026-06-01T14:00:00+01:00"', ["alpha", "beta"]),
        ('(state = USED OR labels.team = "sales") AND size < 9', ["alpha", "beta"]),
        # OR binds tighter than AND (AIP-160).
        ("size = 1 AND state = NEW OR state = USED", ["alpha"]),
    ],
)
async def test_filters_select_the_right_rows(widgets: ServiceDatabase, text: str, expected: list[str]):
    assert await _ids(widgets, text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("colour = RED", "cannot filter on 'colour'"),
        ("state = RED", "is not a state"),
        ("state > NEW", "takes only = and !="),
        ("size = big", "whole number"),
        ("size = 1.5", "whole number"),
        ("active = yes", "true or false"),
        ("display_name = alpha", "quoted string"),
        ('create_time > "yesterday"', "RFC 3339"),
        ('create_time > "2026-01-01T00:00:00"', "RFC 3339"),
        ('labels.Team = "x"', "is not a label key"),
        ('labels.team > "x"', "takes = or !="),
        ('labels = "x"', "labels:KEY"),
        ("(state = NEW", "')'"),
        ("state = NEW state = USED", "join conditions"),
        ("state =", "ends early"),
        ("state", "ends early"),
        ("AND", "expected a condition"),
        ("state = NEW AND", "ends early"),
        ("state ~ NEW", "unexpected '~'"),
        ("size:3", "takes only *"),
        ('display_name.x = "a"', "cannot filter on"),
        ("(" * 12 + "size = 1" + ")" * 12, "deeper than"),
        (" OR ".join(["size = 1"] * 51), "more than 50"),
        ("x" * (FILTER_MAX + 1), "longer than"),
        ('display_name = "\\q"', "not a valid string"),
    ],
)
def test_bad_filters_are_invalid_argument_on_the_filter_field(text: str, problem: str):
    with pytest.raises(InvalidArgument) as raised:
        compile_filter(text, SCHEMA)
    assert list(raised.value.field_violations) == ["filter"]
    assert problem in raised.value.field_violations["filter"]
    assert raised.value.message.startswith("unsupported filter: ")


def test_the_parsed_filter_says_which_fields_it_names():
    assert parse_filter('state = NEW OR labels.team = "x"', SCHEMA).fields == {"state", "labels"}
    assert parse_filter("", SCHEMA).fields == frozenset()
