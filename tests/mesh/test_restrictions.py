"""mesh.restrictions: the limits an API key's principal carries, and mesh.kit.allow_lists."""

from __future__ import annotations

import pytest

from mesh.errors import NotFound, PermissionDenied
from mesh.kit import allow_lists
from mesh.principal import Principal, PrincipalKind
from mesh.restrictions import NO_RESTRICTIONS, KeyRestrictions, MalformedRestrictions, parse_client_address

LIMITED = KeyRestrictions(
    ip_ranges=("203.0.113.0/24", "2001:db8::/32"),
    origins=("https://app.example.com",),
    agents=("organizations/o1/agents/front", "organizations/o1/agents/back"),
)


def test_addresses_from_grpc_peers_and_dual_stack_listeners():
    assert str(parse_client_address("ipv4:203.0.113.9:40000")) == "203.0.113.9"
    assert str(parse_client_address("ipv6:%5B2001:db8::1%5D:5000")) == "2001:db8::1"
    assert str(parse_client_address("ipv6:%5B::ffff:203.0.113.9%5D:5000")) == "203.0.113.9"
    assert str(parse_client_address("203.0.113.9")) == "203.0.113.9"
    assert parse_client_address("unix:/tmp/socket") is None
    assert parse_client_address("") is None


def test_every_non_empty_list_must_match():
    assert LIMITED.failure("ipv4:203.0.113.9:1", "https://app.example.com") is None
    assert LIMITED.failure("ipv6:%5B2001:db8::7%5D:1", "") is None  # servers send no Origin
    assert LIMITED.failure("ipv4:198.51.100.1:1", "https://app.example.com") is not None
    assert LIMITED.failure("", "https://app.example.com") is not None  # unknown address fails closed
    assert LIMITED.failure("ipv4:203.0.113.9:1", "https://evil.example") is not None
    assert LIMITED.failure("ipv4:203.0.113.9:1", "https://APP.example.com:443") is None
    assert NO_RESTRICTIONS.failure("", "https://evil.example") is None
    assert NO_RESTRICTIONS.empty and not LIMITED.empty


def test_expiry_is_checked_against_the_clock():
    expiring = KeyRestrictions(expires_at=1000.0)
    assert expiring.failure("", "", now=999.0) is None
    assert expiring.failure("", "", now=1000.0) == "the key has expired"


def test_the_claim_round_trips_and_refuses_anything_else():
    claim = LIMITED.to_claim()
    assert set(claim) == {"ip", "origin", "agents"}
    assert KeyRestrictions.from_claim(claim) == LIMITED
    assert KeyRestrictions(agents=("organizations/o1/agents/a",)).to_claim() == {
        "agents": ["organizations/o1/agents/a"]
    }
    bad: object
    for bad in ("x", ["ip"], {"ip": "203.0.113.0/24"}, {"ip": [1]}, {"admin": []}, {"ip": ["not a network"]}):
        with pytest.raises(MalformedRestrictions):
            KeyRestrictions.from_claim(bad)


def _principal(restrictions: KeyRestrictions) -> Principal:
    return Principal(
        "organizations/o1/api_keys/k1",
        PrincipalKind.API_KEY,
        "o1",
        "",
        frozenset({"agents.get"}),
        restrictions=restrictions,
    )


def test_allow_lists_hide_other_resources_and_filter_lists():
    limited, free = _principal(LIMITED), _principal(NO_RESTRICTIONS)
    allow_lists.require_allowed(limited, "organizations/o1/agents/front")
    with pytest.raises(NotFound) as hidden:
        allow_lists.require_allowed(limited, "organizations/o1/agents/other")
    assert str(hidden.value.message) == "organizations/o1/agents/other not found"
    with pytest.raises(PermissionDenied):
        allow_lists.require_allowed_new(limited, "organizations/o1/agents/new")
    assert allow_lists.allowed_ids(limited, "o1") == frozenset({"front", "back"})
    assert allow_lists.allowed_ids(limited, "o2") == frozenset()
    assert allow_lists.allowed_ids(free, "o1") is None
    allow_lists.require_allowed(free, "organizations/o1/agents/other")
    # Other kinds of resources are not allow-listed (yet).
    assert allow_lists.allowed(limited, "organizations/o1/campaigns/c1", collection="campaigns")
