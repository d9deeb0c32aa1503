from __future__ import annotations

import datetime

import pytest

from mesh.errors import Aborted, InvalidArgument
from mesh.kit.etags import check_etag, etag
from mesh.kit.validation import Violations, map_key_path, require_valid, text_problem

CREATED = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_etags_are_opaque_and_change_with_every_revision():
    first = etag("organizations/acme/agents/a", CREATED, 1)
    assert len(first) == 16
    assert etag("organizations/acme/agents/a", CREATED, 2) != first
    assert etag("organizations/globex/agents/a", CREATED, 1) != first
    assert etag("organizations/acme/agents/a", CREATED + datetime.timedelta(seconds=1), 1) != first
    assert etag("organizations/acme/agents/a", CREATED, 1) == first


def test_a_stale_etag_is_aborted_and_an_empty_one_skips_the_check():
    check_etag("", "abc")
    check_etag("abc", "abc")
    with pytest.raises(Aborted, match="the agent has changed"):
        check_etag("old", "abc", what="the agent")


def test_the_collector_names_every_bad_field_at_once():
    violations = Violations()
    violations.text("agent.display_name", "", limit=100, required=True)
    violations.check(False, "agent.draft.voice", "must name a voice")
    nested = violations.nested("agent.labels")
    nested.add('["Team"]', "bad key")
    violations.text("agent.description", "fine", limit=100)
    assert len(violations) == 3
    with pytest.raises(InvalidArgument) as raised:
        violations.raise_if_any()
    assert raised.value.field_violations == {
        "agent.display_name": "is required",
        "agent.draft.voice": "must name a voice",
        'agent.labels["Team"]': "bad key",
    }
    assert raised.value.message == '3 invalid fields: agent.display_name, agent.draft.voice, agent.labels["Team"]'


def test_nothing_to_report_raises_nothing():
    Violations().raise_if_any()
    require_valid({})
    assert map_key_path("labels", "a b") == 'labels["a b"]'


@pytest.mark.parametrize(
    ("value", "multiline", "problem"),
    [
        ("x" * 11, False, "must be at most 10 characters"),
        ("a\nb", False, "must not contain control characters"),
        ("a\nb", True, None),
        ("a\x00b", True, "must not contain control characters other than tabs and line breaks"),
    ],
)
def test_text_rules(value: str, multiline: bool, problem: str | None):
    assert text_problem(value, limit=10, multiline=multiline) == problem
