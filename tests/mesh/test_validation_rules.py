"""The contracts' buf.validate rules, checked by mesh.validation_rules without a network."""

from __future__ import annotations

import uuid
from typing import Any

from validated.v1 import validated_pb2

from mesh.validation_rules import has_rules, violations


def _valid(**overrides) -> validated_pb2.EchoRequest:
    fields: dict[str, Any] = {
        "name": "echo",
        "page_size": 10,
        "request_id": str(uuid.uuid4()),
        "labels": {"team": "sales"},
        "draft": validated_pb2.Draft(voice="aria"),
        "tags": ["a", "b"],
        "phone_number": "+14155550100",
        "email": "ada@example.com",
    }
    return validated_pb2.EchoRequest(**(fields | overrides))


def _fields(request) -> dict[str, str]:
    return {violation.field: violation.description for violation in violations(request)}


def test_a_valid_request_has_no_violation():
    assert violations(_valid()) == []


def test_optional_fields_left_empty_break_no_rule():
    assert violations(validated_pb2.EchoRequest(name="echo")) == []


def test_every_broken_rule_is_listed_with_the_services_field_paths():
    request = validated_pb2.EchoRequest(
        name="",
        page_size=5000,
        request_id="signup-123",
        labels={"Team": "sales"},
        draft=validated_pb2.Draft(voice="v" * 17),
        tags=["a", "a", "b", "c"],
        phone_number="4155550100",
        email="not an address",
    )
    fields = _fields(request)
    assert set(fields) == {
        "name",
        "page_size",
        "request_id",
        'labels["Team"]',
        "draft.voice",
        "tags",
        "phone_number",
        "email",
    }
    assert "at least 1" in fields["name"]
    assert "UUID" in fields["request_id"]
    assert "16" in fields["draft.voice"]


def test_a_repeated_item_is_named_by_its_index():
    fields = _fields(_valid(tags=["short", "far too long"]))
    assert list(fields) == ["tags[1]"]


def test_two_rules_broken_by_one_field_share_one_entry():
    fields = _fields(_valid(tags=["same", "same", "same", "same"]))
    assert list(fields) == ["tags"]
    assert "; " in fields["tags"]


def test_too_many_labels_are_refused():
    fields = _fields(_valid(labels={f"k{i}": "v" for i in range(65)}))
    assert list(fields) == ["labels"]


def test_messages_without_rules_are_known_to_have_none():
    assert not has_rules(validated_pb2.PlainRequest.DESCRIPTOR)
    assert has_rules(validated_pb2.EchoRequest.DESCRIPTOR)
    assert has_rules(validated_pb2.Draft.DESCRIPTOR)
    assert violations(validated_pb2.PlainRequest(name="x" * 10_000)) == []
