"""API key rules without network or database."""

from __future__ import annotations

import datetime
import re

import pytest

from mesh.access import Role, default_access_table
from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.developer_api import credentials, domain
from services.developer_api.restrictions import (
    Restrictions,
    normalize_origin,
    parse_client_address,
    restriction_failure,
    validate_restrictions,
    widened,
)

NOW = datetime.datetime(2026, 6, 1, 12, 30, 15, tzinfo=datetime.UTC)
TABLE = default_access_table()
KNOWN = TABLE.all_permissions - TABLE.internal_only
ADMIN = TABLE.permissions(Role.ADMIN)
AGENT = TABLE.permissions(Role.AGENT)


def scopes(requested, *, held=ADMIN, role="ADMIN", key_type=domain.KeyType.SECRET):
    return domain.validate_scopes(requested, held=held, creator_role=role, known=KNOWN, key_type=key_type)


# -- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "prefix"), [(domain.Environment.LIVE, "vk_live_"), (domain.Environment.TEST, "vk_test_")]
)
def test_secret_has_the_environment_prefix_and_40_base62_characters(environment, prefix):
    secret = credentials.new_secret(environment)
    assert secret.startswith(prefix)
    assert re.fullmatch(r"[A-Za-z0-9]{40}", secret.removeprefix(prefix))
    assert credentials.looks_like_secret(secret)


def test_secrets_are_unique_and_the_visible_prefix_is_16_characters():
    many = {credentials.new_secret(domain.Environment.LIVE) for _ in range(200)}
    assert len(many) == 200
    secret = many.pop()
    assert credentials.visible_prefix(secret) == secret[:16]
    assert len(credentials.visible_prefix(secret)) == 16


def test_secret_hash_is_sha256_hex_and_compared_exactly():
    secret = credentials.new_secret(domain.Environment.TEST)
    digest = credentials.secret_hash(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert secret not in digest
    assert credentials.hashes_match(digest, credentials.secret_hash(secret))
    other = secret[:-1] + ("y" if secret.endswith("x") else "x")  # never the same secret
    assert not credentials.hashes_match(digest, credentials.secret_hash(other))


@pytest.mark.parametrize(
    "value",
    ["", "vk_live_", "sk_live_" + "a" * 40, "vk_prod_" + "a" * 40, "vk_live_" + "a" * 39, "vk_live_" + "-" * 40],
)
def test_malformed_secrets_are_recognised_before_any_lookup(value):
    assert not credentials.looks_like_secret(value)


def test_sealed_secret_opens_only_with_the_same_key_and_name():
    box = credentials.SecretBox("kek-one")
    sealed = box.seal("vk_live_secret", "api_keys/a")
    assert b"vk_live_secret" not in sealed
    assert box.open(sealed, "api_keys/a") == "vk_live_secret"
    assert box.open(sealed, "api_keys/b") is None
    assert credentials.SecretBox("kek-two").open(sealed, "api_keys/a") is None
    assert box.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), "api_keys/a") is None
    assert "kek" not in repr(box)


# -- names --------------------------------------------------------------------------------


def test_generated_ids_cannot_collide_with_chosen_ones():
    generated = domain.new_key_id()
    assert re.fullmatch(r"k_[a-z2-7]{16}", generated)
    with pytest.raises(InvalidArgument):
        domain.validate_key_id(generated)


@pytest.mark.parametrize("key_id", ["crm-sync", "abc", "a" * 63])
def test_chosen_ids(key_id):
    assert domain.validate_key_id(key_id) == key_id


# The kit's id rule (mesh.kit.ids): 3 to 63 of [a-z0-9-], starting with a letter.
@pytest.mark.parametrize("key_id", ["ab", "a" * 64, "-abc", "1abc", "ABCD", "ab_cd", "ab cd"])
def test_bad_chosen_ids(key_id):
    with pytest.raises(InvalidArgument):
        domain.validate_key_id(key_id)


def test_key_names_are_scoped_to_an_organisation():
    name = domain.key_name("org_a", "k_abc")
    assert name == "organizations/org_a/api_keys/k_abc"
    assert domain.parse_key_name(name) == ("org_a", "k_abc")
    assert domain.log_name("org_a", "r_1") == "organizations/org_a/api_request_logs/r_1"
    for bad in (
        "k_abc",
        "api_keys/k_abc",  # the name before organisations scoped them
        "organizations/org_a/agents/k_abc",
        "organizations/org_a/api_keys/",
        "organizations/org_a/api_keys/a/b",
        "organizations/-/api_keys/k_abc",
        "organizations/org_a/api_keys/-",
    ):
        with pytest.raises(InvalidArgument) as caught:
            domain.parse_key_name(bad)
        assert caught.value.field_violations == {"name": caught.value.field_violations["name"]}


def test_usage_parents_name_one_key_or_every_key():
    assert domain.parse_usage_parent("organizations/org_a/api_keys/k_abc") == ("org_a", "k_abc")
    assert domain.parse_usage_parent("organizations/org_a/api_keys/-") == ("org_a", None)
    for bad in ("organizations/-/api_keys/-", "api_keys/-", "organizations/org_a", ""):
        with pytest.raises(InvalidArgument):
            domain.parse_usage_parent(bad)


def test_every_bad_field_of_a_new_key_is_reported_at_once():
    with pytest.raises(InvalidArgument) as caught:
        domain.validate_new_key(
            display_name="",
            key_type=None,
            environment=None,
            scopes=["calls.teleport"],
            restrictions=Restrictions(allowed_ip_ranges=("nowhere",)),
            expire_time=NOW,
            labels={"Bad": "x"},
            held=ADMIN,
            creator_role="ADMIN",
            known=KNOWN,
            organization_id="org_a",
            now=NOW,
        )
    assert set(caught.value.field_violations) == {
        "api_key.display_name",
        "api_key.environment",
        "api_key.scopes",
        "api_key.restrictions.allowed_ip_ranges",
        "api_key.expire_time",
        "api_key.labels[Bad]",
    }


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "tab\tname"])
def test_display_name_is_required_and_bounded(name):
    with pytest.raises(InvalidArgument) as caught:
        domain.validate_display_name(name)
    assert "api_key.display_name" in caught.value.field_violations


# -- scopes -------------------------------------------------------------------------------


def test_scopes_within_the_creators_permissions_are_sorted_and_deduplicated():
    assert scopes(["calls.get", "calls.create", "calls.get"]) == ("calls.create", "calls.get")


def test_empty_scopes_are_rejected():
    with pytest.raises(InvalidArgument):
        scopes([])
    with pytest.raises(InvalidArgument):
        scopes(["  "])


def test_scopes_beyond_the_creators_role_are_denied_by_name():
    with pytest.raises(PermissionDenied) as caught:
        scopes(["calls.create", "api_keys.create", "members.update"], held=AGENT, role="AGENT")
    assert "api_keys.create" in caught.value.message
    assert "members.update" in caught.value.message
    assert "calls.create" not in caught.value.message


def test_an_api_key_principal_grants_only_its_own_scopes():
    held = domain.held_permissions(frozenset({"api_keys.create", "calls.get"}), "", TABLE)
    assert scopes(["calls.get"], held=held, role="") == ("calls.get",)
    with pytest.raises(PermissionDenied):
        scopes(["calls.create"], held=held, role="")


def test_held_permissions_fall_back_to_the_role():
    assert domain.held_permissions(frozenset(), "MANAGER", TABLE) == TABLE.permissions(Role.MANAGER)
    assert domain.held_permissions(frozenset(), "NOBODY", TABLE) == frozenset()


def test_every_permission_only_for_super_admin():
    assert scopes(["*"], held=frozenset({"*"}), role="SUPER_ADMIN") == ("*",)
    with pytest.raises(PermissionDenied):
        scopes(["*"], held=ADMIN, role="ADMIN")
    with pytest.raises(InvalidArgument):
        scopes(["*", "calls.get"], held=frozenset({"*"}), role="SUPER_ADMIN")


def test_unknown_and_internal_scopes_are_invalid():
    with pytest.raises(InvalidArgument):
        scopes(["calls.teleport"], held=frozenset({"*"}), role="SUPER_ADMIN")
    with pytest.raises(InvalidArgument):
        scopes(["api_keys.verify"], held=frozenset({"*"}), role="SUPER_ADMIN")


def test_too_many_scopes():
    with pytest.raises(InvalidArgument):
        scopes(sorted(KNOWN)[:101], held=frozenset({"*"}), role="SUPER_ADMIN")


def test_publishable_keys_hold_only_client_safe_scopes():
    assert scopes(["calls.create"], key_type=domain.KeyType.PUBLISHABLE) == ("calls.create",)
    with pytest.raises(InvalidArgument):
        scopes(["calls.create", "calls.list"], key_type=domain.KeyType.PUBLISHABLE)
    assert domain.CLIENT_SAFE_SCOPES <= KNOWN


def test_scopes_are_narrowed_freely_and_widened_only_by_authority_within_its_own_permissions():
    assert domain.narrowed_scopes(["calls.get", "calls.create"], ["calls.get"], known=KNOWN) == ("calls.get",)
    with pytest.raises(PermissionDenied) as caught:
        domain.narrowed_scopes(["calls.get"], ["calls.get", "calls.create"], known=KNOWN)
    assert "calls.create" in caught.value.message
    assert domain.narrowed_scopes(
        ["calls.get"], ["calls.get", "calls.create"], known=KNOWN, held=ADMIN, may_add=True
    ) == ("calls.create", "calls.get")
    with pytest.raises(PermissionDenied):
        domain.narrowed_scopes(["calls.get"], ["calls.get", "api_keys.create"], known=KNOWN, held=AGENT, may_add=True)
    with pytest.raises(InvalidArgument):
        domain.narrowed_scopes(["calls.get"], [], known=KNOWN)
    with pytest.raises(InvalidArgument):
        domain.narrowed_scopes(["calls.get"], ["*"], known=KNOWN, held=frozenset({"*"}), may_add=True)
    assert domain.narrowed_scopes(["*"], ["calls.get"], known=KNOWN) == ("calls.get",)


def test_only_someone_who_could_create_the_key_may_loosen_it():
    assert domain.may_loosen(is_api_key=False, held=ADMIN, scopes=["calls.get"])
    assert domain.may_loosen(is_api_key=False, held=frozenset({"*"}), scopes=["*"])
    assert not domain.may_loosen(is_api_key=True, held=ADMIN, scopes=["calls.get"])
    assert not domain.may_loosen(
        is_api_key=False, held=frozenset({"api_keys.update", "calls.get"}), scopes=["calls.get"]
    )
    assert not domain.may_loosen(is_api_key=False, held=AGENT, scopes=["calls.get"])


def test_widened_names_the_restrictions_a_change_removes_or_widens():
    old = Restrictions(
        allowed_origins=("https://a.example.com",),
        allowed_ip_ranges=("203.0.113.0/24",),
        allowed_agents=("organizations/o/agents/a1",),
    )
    assert widened(old, old) == []
    assert (
        widened(
            old,
            Restrictions(
                allowed_ip_ranges=("203.0.113.0/25",),
                allowed_origins=old.allowed_origins,
                allowed_agents=old.allowed_agents,
            ),
        )
        == []
    )
    assert widened(old, Restrictions()) == ["allowed_origins", "allowed_agents", "allowed_ip_ranges"]
    assert widened(
        old,
        Restrictions(
            allowed_ip_ranges=("203.0.0.0/16",),
            allowed_origins=old.allowed_origins,
            allowed_agents=("organizations/o/agents/a1", "organizations/o/agents/a2"),
        ),
    ) == [
        "allowed_agents",
        "allowed_ip_ranges",
    ]
    assert widened(Restrictions(), old) == []


def test_rotation_needs_the_keys_power():
    domain.check_creator_holds(["calls.get"], ADMIN)
    domain.check_creator_holds(["calls.get"], frozenset({"*"}))
    with pytest.raises(PermissionDenied):
        domain.check_creator_holds(["api_keys.create"], AGENT)


# -- expiry and rotation -------------------------------------------------------------------


def test_new_key_expiry_is_between_an_hour_and_the_maximum_lifetime_which_is_also_the_default():
    assert domain.validate_new_expiry(None, NOW) == NOW + datetime.timedelta(days=365)
    month = datetime.timedelta(days=30)
    assert domain.validate_new_expiry(None, NOW, max_lifetime=month) == NOW + month
    hour = NOW + datetime.timedelta(hours=1)
    assert domain.validate_new_expiry(hour, NOW) == hour
    year = NOW + datetime.timedelta(days=365)
    assert domain.validate_new_expiry(year, NOW) == year
    for bad in (
        NOW - datetime.timedelta(seconds=1),
        NOW + datetime.timedelta(minutes=59),
        year + datetime.timedelta(seconds=1),
    ):
        with pytest.raises(InvalidArgument):
            domain.validate_new_expiry(bad, NOW)
    with pytest.raises(InvalidArgument):
        domain.validate_new_expiry(NOW + month + datetime.timedelta(seconds=1), NOW, max_lifetime=month)


def test_expiry_is_brought_forward_freely_and_pushed_back_only_by_authority():
    current = NOW + datetime.timedelta(days=30)
    sooner = NOW + datetime.timedelta(days=1)
    assert domain.brought_forward_expiry(current, sooner, NOW) == sooner
    assert domain.brought_forward_expiry(None, sooner, NOW) == sooner
    later = current + datetime.timedelta(seconds=1)
    with pytest.raises(PermissionDenied):
        domain.brought_forward_expiry(current, later, NOW)
    assert domain.brought_forward_expiry(current, later, NOW, may_extend=True) == later
    with pytest.raises(InvalidArgument):
        domain.brought_forward_expiry(current, NOW + datetime.timedelta(days=366), NOW, may_extend=True)
    with pytest.raises(InvalidArgument):
        domain.brought_forward_expiry(current, None, NOW)
    with pytest.raises(InvalidArgument):
        domain.brought_forward_expiry(current, NOW, NOW)
    with pytest.raises(InvalidArgument):
        domain.brought_forward_expiry(None, NOW + datetime.timedelta(days=366), NOW)


def test_rotation_overlap_defaults_to_a_day_and_never_extends_the_key():
    assert domain.rotation_expiry(None, None, NOW) == NOW + datetime.timedelta(hours=24)
    assert domain.rotation_expiry(None, datetime.timedelta(0), NOW) == NOW
    assert domain.rotation_expiry(None, datetime.timedelta(days=7), NOW) == NOW + datetime.timedelta(days=7)
    soon = NOW + datetime.timedelta(hours=2)
    assert domain.rotation_expiry(soon, datetime.timedelta(days=3), NOW) == soon
    for bad in (datetime.timedelta(seconds=-1), datetime.timedelta(days=7, seconds=1)):
        with pytest.raises(InvalidArgument):
            domain.rotation_expiry(None, bad, NOW)


def test_effective_state_applies_expiry():
    active, expired, revoked = domain.KeyState.ACTIVE, domain.KeyState.EXPIRED, domain.KeyState.REVOKED
    assert domain.effective_state(active, None, NOW) is active
    assert domain.effective_state(active, NOW + datetime.timedelta(seconds=1), NOW) is active
    assert domain.effective_state(active, NOW, NOW) is expired
    assert domain.effective_state(revoked, NOW - datetime.timedelta(days=1), NOW) is revoked


def test_only_active_unrotated_keys_rotate():
    domain.require_rotatable(domain.KeyState.ACTIVE, "")
    with pytest.raises(FailedPrecondition):
        domain.require_rotatable(domain.KeyState.ACTIVE, "api_keys/k_next")
    with pytest.raises(FailedPrecondition):
        domain.require_rotatable(domain.KeyState.REVOKED, "")


def test_last_used_is_written_at_most_once_a_minute():
    minute = domain.last_used_minute(NOW)
    assert minute == NOW.replace(second=0, microsecond=0)
    assert domain.needs_last_used_write(None, NOW)
    assert not domain.needs_last_used_write(minute, NOW + datetime.timedelta(seconds=40))
    assert domain.needs_last_used_write(minute, NOW + datetime.timedelta(seconds=45))


# -- restrictions ---------------------------------------------------------------------------


def test_restrictions_are_normalised():
    value = validate_restrictions(
        Restrictions(
            allowed_origins=("HTTPS://App.Example.com/", "https://app.example.com:443", "http://localhost:3000"),
            allowed_ip_ranges=("203.0.113.7/24", "2001:db8::/32"),
            allowed_agents=("organizations/org_a/agents/a1",),
        ),
        publishable=False,
        organization_id="org_a",
    )
    assert value.allowed_origins == ("http://localhost:3000", "https://app.example.com")
    assert value.allowed_ip_ranges == ("2001:db8::/32", "203.0.113.0/24")


@pytest.mark.parametrize(
    "restrictions",
    [
        Restrictions(allowed_origins=("app.example.com",)),
        Restrictions(allowed_origins=("https://app.example.com/path",)),
        Restrictions(allowed_origins=("ftp://app.example.com",)),
        Restrictions(allowed_ip_ranges=("203.0.113.300/24",)),
        Restrictions(allowed_agents=("campaigns/c1",)),
        Restrictions(allowed_agents=("agents/a1",)),
        # An agent of another organisation never qualifies.
        Restrictions(allowed_agents=("organizations/org_b/agents/a1",)),
    ],
)
def test_bad_restrictions(restrictions):
    with pytest.raises(InvalidArgument):
        validate_restrictions(restrictions, publishable=False, organization_id="org_a")


def test_publishable_keys_need_origins():
    with pytest.raises(InvalidArgument):
        validate_restrictions(Restrictions(), publishable=True, organization_id="org_a")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("ipv4:203.0.113.9:51234", "203.0.113.9"),
        ("203.0.113.9:443", "203.0.113.9"),
        ("ipv6:[2001:db8::1]:51234", "2001:db8::1"),
        ("ipv6:%5B2001:db8::1%5D:51234", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("", None),
        ("unix:/tmp/socket", None),
    ],
)
def test_client_addresses(value, expected):
    parsed = parse_client_address(value)
    assert (str(parsed) if parsed else None) == expected


def test_ip_ranges_fail_closed():
    limited = Restrictions(allowed_ip_ranges=("203.0.113.0/24",))
    assert restriction_failure(limited, client_address="203.0.113.9", origin="") is None
    assert restriction_failure(limited, client_address="ipv4:198.51.100.1:1", origin="") is not None
    assert restriction_failure(limited, client_address="", origin="") is not None
    assert restriction_failure(Restrictions(), client_address="", origin="") is None


def test_origins_are_checked_when_present():
    limited = Restrictions(allowed_origins=("https://app.example.com",))
    assert restriction_failure(limited, client_address="", origin="https://APP.example.com") is None
    assert restriction_failure(limited, client_address="", origin="https://evil.example.com") is not None
    assert restriction_failure(limited, client_address="", origin="") is None
    assert normalize_origin("null") is None


def test_a_whole_new_key():
    settings = domain.validate_new_key(
        display_name="  CRM sync ",
        key_type=None,
        environment=domain.Environment.LIVE,
        scopes=["calls.get"],
        restrictions=Restrictions(),
        expire_time=None,
        labels={"system": "crm"},
        held=ADMIN,
        creator_role="ADMIN",
        known=KNOWN,
        organization_id="org_a",
        now=NOW,
    )
    assert settings.display_name == "CRM sync"
    assert settings.key_type is domain.KeyType.SECRET
    with pytest.raises(InvalidArgument):
        domain.validate_new_key(
            display_name="x",
            key_type=None,
            environment=None,
            scopes=["calls.get"],
            restrictions=Restrictions(),
            expire_time=None,
            labels={},
            held=ADMIN,
            creator_role="ADMIN",
            known=KNOWN,
            organization_id="org_a",
            now=NOW,
        )


def test_labels():
    assert domain.validate_labels({"b": "2", "a": "1"}) == {"a": "1", "b": "2"}
    for bad in ({"Bad": "x"}, {"ok": "x" * 256}, {f"k{i}": "v" for i in range(65)}):
        with pytest.raises(InvalidArgument):
            domain.validate_labels(bad)
