"""Which request ids the mesh believes, carries and logs."""

from __future__ import annotations

import pytest

from mesh import request_id


@pytest.mark.parametrize(
    "value",
    ["req-1", "3f2a9c1e-7b4d-4e8a-9f00-1234567890ab", "01HZY8Q4N3K7", "Root=1-5f84c7a5-0d3c", "a" * 128, "b64+/=_.~:@"],
)
def test_plain_short_ids_are_accepted(value: str) -> None:
    assert request_id.accepted(value) == value
    assert request_id.for_request(value) == value


@pytest.mark.parametrize("value", ["", None, "a" * 129, "has space", 'quote"', "new\nline", "é", "tab\t", "{json}"])
def test_anything_else_counts_as_none_and_the_edge_makes_one(value: str | None) -> None:
    assert request_id.accepted(value) == ""
    made = request_id.for_request(value)
    assert len(made) == 32 and request_id.accepted(made) == made


def test_bound_holds_for_the_block_only() -> None:
    assert request_id.current() == ""
    with request_id.bound("outer"):
        with request_id.bound("inner"):
            assert request_id.current() == "inner"
        assert request_id.current() == "outer"
    assert request_id.current() == ""
