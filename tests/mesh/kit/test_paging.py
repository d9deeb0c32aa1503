from __future__ import annotations

import datetime

import pytest

from mesh.errors import InvalidArgument
from mesh.kit import paging
from mesh.kit.paging import PageTokens, query_binding
from vocelio.agents.v1 import agents_service_pb2 as pb

TOKENS = PageTokens.from_secret("a-test-secret", "agents")


def test_page_size_defaults_caps_and_refuses_negatives():
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE
    assert paging.page_size(7) == 7
    assert paging.page_size(10_000) == paging.MAX_PAGE_SIZE
    assert paging.page_size(0, default=10, maximum=20) == 10
    with pytest.raises(InvalidArgument) as raised:
        paging.page_size(-1)
    assert list(raised.value.field_violations) == ["page_size"]


def test_the_binding_ignores_paging_fields_only():
    first = pb.ListAgentsRequest(filter="state = DRAFT", page_size=5, page_token="x")
    same = pb.ListAgentsRequest(filter="state = DRAFT", page_size=50)
    other = pb.ListAgentsRequest(filter="state = PUBLISHED")
    assert query_binding(first, "acme") == query_binding(same, "acme")
    assert query_binding(first, "acme") != query_binding(other, "acme")
    assert query_binding(first, "acme") != query_binding(first, "globex")


def test_a_token_resumes_only_the_query_it_came_from():
    request = pb.ListAgentsRequest(filter="state = DRAFT")
    binding = query_binding(request, "acme")
    token = TOKENS.encode((1_700_000_000_000_000, "support"), binding)
    assert TOKENS.decode(token, binding) == (1_700_000_000_000_000, "support")
    other = query_binding(pb.ListAgentsRequest(filter="state = ARCHIVED"), "acme")
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.decode(token, other)
    assert "other parameters" in raised.value.field_violations["page_token"]


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "AA", lambda t: "x" + t, lambda t: "", lambda t: "no-dot"])
def test_edited_or_foreign_tokens_are_invalid_argument(mangle):
    binding = query_binding(pb.ListAgentsRequest(), "acme")
    token = TOKENS.encode((1, "a"), binding)
    with pytest.raises(InvalidArgument) as raised:
        TOKENS.decode(mangle(token), binding)
    assert list(raised.value.field_violations) == ["page_token"]
    with pytest.raises(InvalidArgument):
        PageTokens.from_secret("a-test-secret", "teams").decode(token, binding)


def test_empty_tokens_mean_the_first_page_and_short_keys_are_refused():
    assert TOKENS.decode_optional("", "b") is None
    assert PageTokens.ephemeral().decode_optional("", "b") is None
    with pytest.raises(ValueError, match="16 bytes"):
        PageTokens(b"short")


def test_time_keys_are_exact_and_positions_are_checked():
    moment = datetime.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=datetime.UTC)
    assert paging.from_time_key(paging.time_key(moment)) == moment
    assert paging.position_shape((1, "a"), int, str) == (1, "a")
    with pytest.raises(InvalidArgument):
        paging.position_shape(("a", 1), int, str)
    with pytest.raises(InvalidArgument):
        paging.position_shape((True, "a"), int, str)
