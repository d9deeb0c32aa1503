from __future__ import annotations

import datetime

import pytest

from mesh.errors import InvalidArgument
from mesh.kit import ids
from mesh.kit.clock import FixedClock, SystemClock, utc_now


def test_system_clock_is_aware_utc():
    assert SystemClock().now().tzinfo is datetime.UTC
    assert utc_now().tzinfo is datetime.UTC


def test_fixed_clock_stands_still_until_advanced():
    clock = FixedClock(datetime.datetime(2026, 5, 1, 12, tzinfo=datetime.UTC))
    assert clock.now() == clock.now() == datetime.datetime(2026, 5, 1, 12, tzinfo=datetime.UTC)
    assert clock.advance(datetime.timedelta(minutes=5)) == datetime.datetime(2026, 5, 1, 12, 5, tzinfo=datetime.UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime.datetime(2026, 5, 1))


@pytest.mark.parametrize("candidate", ["abc", "support-line-2", "a" * 63])
def test_chosen_ids_follow_aip_122(candidate: str):
    assert ids.chosen_id_problem(candidate) is None
    assert ids.is_id(candidate)


@pytest.mark.parametrize("candidate", ["", "ab", "1abc", "Abc", "a_b_c", "a" * 64, "ab c", "ag_abcdefghijklmnop"])
def test_bad_chosen_ids_are_refused_with_the_field_named(candidate: str):
    with pytest.raises(InvalidArgument) as raised:
        ids.require_chosen_id(candidate, field="agent_id")
    assert raised.value.field_violations == {"agent_id": ids.CHOSEN_ID_RULE}


def test_generated_ids_never_collide_with_chosen_ones():
    generated = ids.new_id("ag")
    assert ids.GENERATED_ID.fullmatch(generated)
    assert ids.chosen_id_problem(generated) is not None  # the underscore keeps them apart
    assert ids.is_id(generated)
    assert ids.chosen_or_new("", "ag", field="agent_id").startswith("ag_")
    assert ids.chosen_or_new("mine", "ag", field="agent_id") == "mine"
    with pytest.raises(ValueError, match="prefix"):
        ids.new_id("Bad")
