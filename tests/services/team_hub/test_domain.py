"""Team hub's pure rules: the role ladder, the organisation lifecycle, names and masks."""

from __future__ import annotations

import datetime
import itertools

import pytest

from mesh.access import Role, default_access_table
from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mesh.kit.masks import UpdateMask
from services.team_hub.domain import common, roles
from services.team_hub.domain import organizations as orgs
from services.team_hub.domain.organizations import OrganizationState, Transition
from vocelio.team_hub.v1 import organization_pb2

MASK = UpdateMask.for_message(organization_pb2.Organization)

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
MEMBER_ROLES = list(roles.MEMBERSHIP_ROLES)
ACTOR = "users/u_actor"
TARGET = "users/u_target"


def expected_change(granter: Role, current: Role, new: Role, admins: int) -> type[Exception] | None:
    """The rules of the contract, restated: what a role change must answer."""
    if current > granter:
        return PermissionDenied  # a member above the actor
    if new > granter:
        return PermissionDenied  # a role above the actor's own
    if current == Role.ADMIN and new != Role.ADMIN and admins == 1:
        return FailedPrecondition  # the last ADMIN
    return None


CHANGE_CASES = [
    pytest.param(g, c, n, a, id=f"{g.name}:{c.name}->{n.name}:{a}admin")
    for g, c, n, a in itertools.product(list(Role), MEMBER_ROLES, MEMBER_ROLES, (1, 2))
]


@pytest.mark.parametrize(("granter", "current", "new", "admins"), CHANGE_CASES)
def test_role_change_matrix(granter: Role, current: Role, new: Role, admins: int) -> None:
    actor = roles.Actor(ACTOR, granter)
    wanted = expected_change(granter, current, new, admins)
    if wanted is None:
        roles.check_role_change(actor, TARGET, current, new, admins)
    else:
        with pytest.raises(wanted):
            roles.check_role_change(actor, TARGET, current, new, admins)


@pytest.mark.parametrize("role", list(Role))
def test_nobody_changes_their_own_role(role: Role) -> None:
    with pytest.raises(PermissionDenied, match="your own role"):
        roles.check_role_change(roles.Actor(ACTOR, role), ACTOR, min(role, Role.ADMIN), Role.GUEST, 5)


def test_messages_say_what_went_wrong() -> None:
    manager = roles.Actor(ACTOR, Role.MANAGER)
    with pytest.raises(PermissionDenied, match="above your own role"):
        roles.check_role_change(manager, TARGET, Role.AGENT, Role.ADMIN, 2)
    with pytest.raises(PermissionDenied, match=r"whose role \(ADMIN\) is above your own"):
        roles.check_role_change(manager, TARGET, Role.ADMIN, Role.AGENT, 2)
    with pytest.raises(FailedPrecondition, match="last ADMIN"):
        roles.check_role_change(roles.Actor(ACTOR, Role.ADMIN), TARGET, Role.ADMIN, Role.MANAGER, 1)


@pytest.mark.parametrize(
    ("granter", "current", "admins", "wanted"),
    [
        (Role.ADMIN, Role.ADMIN, 1, FailedPrecondition),
        (Role.ADMIN, Role.ADMIN, 2, None),
        (Role.SUPER_ADMIN, Role.ADMIN, 1, FailedPrecondition),
        (Role.MANAGER, Role.ADMIN, 2, PermissionDenied),
        (Role.MANAGER, Role.MANAGER, 1, None),
        (Role.VIEWER, Role.AGENT, 1, PermissionDenied),
        (Role.GUEST, Role.GUEST, 1, None),
    ],
)
def test_removal(granter: Role, current: Role, admins: int, wanted: type[Exception] | None) -> None:
    actor = roles.Actor(ACTOR, granter)
    if wanted is None:
        roles.check_removal(actor, TARGET, current, admins)
    else:
        with pytest.raises(wanted):
            roles.check_removal(actor, TARGET, current, admins)


def test_members_may_leave_but_not_as_the_last_admin() -> None:
    roles.check_removal(roles.Actor(ACTOR, Role.AGENT), ACTOR, Role.AGENT, 1)
    with pytest.raises(FailedPrecondition, match="cannot be removed"):
        roles.check_removal(roles.Actor(ACTOR, Role.ADMIN), ACTOR, Role.ADMIN, 1)


@pytest.mark.parametrize(("granter", "role"), list(itertools.product(list(Role), MEMBER_ROLES)))
def test_grant_never_above_own(granter: Role, role: Role) -> None:
    actor = roles.Actor(ACTOR, granter)
    if role <= granter:
        roles.check_grant(actor, role)
    else:
        with pytest.raises(PermissionDenied):
            roles.check_grant(actor, role)


def test_membership_roles() -> None:
    assert roles.membership_role(40) is Role.MANAGER
    with pytest.raises(InvalidArgument, match="SUPER_ADMIN is never a membership role"):
        roles.membership_role(60)
    with pytest.raises(InvalidArgument, match="required"):
        roles.membership_role(0)
    with pytest.raises(InvalidArgument, match="unknown role"):
        roles.membership_role(35)


def test_actor_roles() -> None:
    assert roles.actor_role("SERVICE") is Role.SUPER_ADMIN
    assert roles.actor_role("MANAGER") is Role.MANAGER
    with pytest.raises(PermissionDenied, match="no role"):
        roles.actor_role("")


def test_guest_expiry() -> None:
    end = NOW + datetime.timedelta(days=30)
    assert roles.guest_expiry(Role.GUEST, end, NOW, "expire_time") == end
    assert roles.guest_expiry(Role.VIEWER, None, NOW, "expire_time") is None
    for bad_role, bad_end in [
        (Role.GUEST, None),
        (Role.GUEST, NOW - datetime.timedelta(seconds=1)),
        (Role.GUEST, NOW + datetime.timedelta(days=91)),
        (Role.AGENT, end),
    ]:
        with pytest.raises(InvalidArgument):
            roles.guest_expiry(bad_role, bad_end, NOW, "expire_time")
    assert roles.membership_active(None, NOW)
    assert not roles.membership_active(NOW, NOW)


def test_role_permissions_come_from_the_access_table() -> None:
    table = default_access_table()
    assert roles.role_permissions(table, Role.ADMIN) == sorted(table.permissions(Role.ADMIN))
    assert "members.update" in roles.role_permissions(table, Role.ADMIN)
    assert "members.update" not in roles.role_permissions(table, Role.MANAGER)
    assert roles.role_permissions(table, Role.SUPER_ADMIN) == sorted(table.all_permissions)
    assert roles.role_display_name(Role.SUPER_ADMIN) == "Super admin"


TRANSITIONS = [
    (OrganizationState.ACTIVE, Transition.SUSPEND, OrganizationState.SUSPENDED),
    (OrganizationState.ACTIVE, Transition.REACTIVATE, None),
    (OrganizationState.ACTIVE, Transition.CLOSE, OrganizationState.CLOSED),
    (OrganizationState.SUSPENDED, Transition.SUSPEND, None),
    (OrganizationState.SUSPENDED, Transition.REACTIVATE, OrganizationState.ACTIVE),
    (OrganizationState.SUSPENDED, Transition.CLOSE, OrganizationState.CLOSED),
    (OrganizationState.CLOSED, Transition.CLOSE, None),
    (OrganizationState.CLOSED, Transition.SUSPEND, FailedPrecondition),
    (OrganizationState.CLOSED, Transition.REACTIVATE, FailedPrecondition),
]


@pytest.mark.parametrize(("state", "action", "outcome"), TRANSITIONS)
def test_organization_lifecycle(state: OrganizationState, action: Transition, outcome: object) -> None:
    if outcome is FailedPrecondition:
        with pytest.raises(FailedPrecondition, match="CLOSED organisation cannot be"):
            orgs.transition(state, action)
    else:
        assert orgs.transition(state, action) == outcome


def test_writable_only_while_active() -> None:
    orgs.ensure_writable(OrganizationState.ACTIVE, platform_admin=False)
    orgs.ensure_writable(OrganizationState.SUSPENDED, platform_admin=True)
    with pytest.raises(FailedPrecondition, match="suspended"):
        orgs.ensure_writable(OrganizationState.SUSPENDED, platform_admin=False)
    with pytest.raises(FailedPrecondition, match="closed"):
        orgs.ensure_writable(OrganizationState.CLOSED, platform_admin=True)


def _fields(paths: list[str], *, platform_admin: bool, **populated: object) -> set[str]:
    patch = organization_pb2.Organization(name="organizations/acme", **populated)  # type: ignore[arg-type]
    return orgs.update_fields(paths, MASK.resolve(paths, patch), platform_admin=platform_admin)


def test_update_fields() -> None:
    assert _fields(["display_name"], platform_admin=False) == {"display_name"}
    assert _fields(["*"], platform_admin=False) == set(orgs.ADMIN_FIELDS)
    assert _fields(["*"], platform_admin=True) == set(orgs.ADMIN_FIELDS | orgs.PLATFORM_FIELDS)
    # The contract's updatable fields are exactly the two sets.
    assert set(MASK.updatable) == orgs.ADMIN_FIELDS | orgs.PLATFORM_FIELDS
    assert _fields([], platform_admin=False, display_name="A", plan=1) == {"display_name"}
    with pytest.raises(PermissionDenied, match="plan"):
        _fields(["plan"], platform_admin=False)
    assert _fields(["plan"], platform_admin=True) == {"plan"}
    with pytest.raises(InvalidArgument) as output_only:
        _fields(["state"], platform_admin=True)
    assert output_only.value.field_violations == {"update_mask.paths[0]": '"state" is output only'}
    with pytest.raises(InvalidArgument, match="cannot be combined"):
        _fields(["*", "labels"], platform_admin=True)


def test_limits_and_reasons() -> None:
    assert orgs.concurrency_limit(10_000) == 10_000
    with pytest.raises(InvalidArgument):
        orgs.concurrency_limit(10_001)
    with pytest.raises(InvalidArgument):
        orgs.max_members(-1)
    with pytest.raises(InvalidArgument, match="reason is required"):
        orgs.reason("  ", required=True)
    assert orgs.reason(" abuse ", required=True) == "abuse"


def test_field_values() -> None:
    assert common.email(" Ann@Example.COM ", "email") == "ann@example.com"
    assert common.email("", "email", required=False) == ""
    with pytest.raises(InvalidArgument):
        common.email("not-an-address", "email")
    assert common.display_name("  Acme  ", "display_name") == "Acme"
    with pytest.raises(InvalidArgument):
        common.display_name("x" * 101, "display_name")
    with pytest.raises(InvalidArgument):
        common.display_name("a\nb", "display_name")
    assert common.country_code("us", "country_code") == "US"
    with pytest.raises(InvalidArgument):
        common.country_code("USA", "country_code")
    assert common.labels({"segment": "smb"}, "labels") == {"segment": "smb"}
    with pytest.raises(InvalidArgument):
        common.labels({"Segment": "smb"}, "labels")
