from __future__ import annotations

import pytest
from google.protobuf import empty_pb2

from mesh.errors import InvalidArgument
from mesh.kit.names import WILDCARD, ResourceName
from vocelio.call_center.v1 import call_pb2

CALLS = ResourceName.for_message(call_pb2.Call)


def test_the_pattern_comes_from_the_proto():
    assert CALLS.pattern == "organizations/{organization}/calls/{call}"
    assert CALLS.resource_type == "vocelio.com/Call"
    assert CALLS.variables == ("organization", "call")
    assert CALLS.id_variable == "call"
    assert CALLS.collection == "calls"
    assert CALLS.parent_pattern == "organizations/{organization}"
    assert CALLS.is_organization_scoped


def test_format_and_parse_are_inverse():
    name = CALLS.format(organization="acme", call="c-1")
    assert name == "organizations/acme/calls/c-1"
    parsed = CALLS.parse(name)
    assert parsed.organization == "acme"
    assert parsed["call"] == "c-1"
    assert CALLS.parent_of(parsed.values) == "organizations/acme"


@pytest.mark.parametrize(
    "name",
    ["", "calls/c-1", "organizations/acme/agents/c-1", "organizations/-/calls/c-1", "organizations/acme/calls/a/b"],
)
def test_other_shapes_are_invalid_argument_naming_the_field(name: str):
    with pytest.raises(InvalidArgument) as raised:
        CALLS.parse(name, field="call.name")
    assert list(raised.value.field_violations) == ["call.name"]


def test_parents_accept_the_wildcard_only_when_asked():
    assert CALLS.parse_parent("organizations/acme").organization == "acme"
    assert CALLS.parse_parent("organizations/-").organization == WILDCARD
    with pytest.raises(InvalidArgument):
        CALLS.parse_parent("organizations/-", allow_wildcard=False)
    with pytest.raises(InvalidArgument) as raised:
        CALLS.parse_parent("teams/x")
    assert raised.value.field_violations == {"parent": "must look like organizations/{organization}"}


def test_format_refuses_missing_or_unsafe_values():
    with pytest.raises(ValueError, match="needs exactly"):
        CALLS.format(organization="acme")
    with pytest.raises(ValueError, match="not a valid"):
        CALLS.format(organization="acme", call="a/b")


def test_singletons_and_bad_patterns():
    policy = ResourceName.from_pattern("organizations/{organization}/compliance_policy")
    assert policy.collection == "compliance_policy"
    assert policy.parent_pattern == "organizations/{organization}"
    assert policy.parse("organizations/acme/compliance_policy").organization == "acme"
    with pytest.raises(ValueError, match="not a resource pattern"):
        ResourceName.from_pattern("organizations/{Organization}")
    with pytest.raises(ValueError, match=r"declares no google\.api\.resource"):
        ResourceName.for_message(empty_pb2.Empty)
