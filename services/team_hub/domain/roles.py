"""The role ladder's rules: who may grant, change or remove which role.

- nobody grants (invites to, assigns) a role above their own (:func:`mesh.access.can_grant`);
- nobody changes their own role;
- nobody changes the role of, or removes, a member whose role is above their own;
- SUPER_ADMIN is never a membership role;
- the last ADMIN of an organisation can be neither demoted nor removed.

Mesh services act as platform operators (SUPER_ADMIN) here.
"""

from __future__ import annotations

import dataclasses
import datetime

from mesh.access import AccessTable, Role, can_grant
from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied

MEMBERSHIP_ROLES = (Role.GUEST, Role.VIEWER, Role.AGENT, Role.MANAGER, Role.ADMIN)
GUEST_MAX_ACCESS = datetime.timedelta(days=90)

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.GUEST: "Time-boxed read access to the items shared with the guest, until the membership expires.",
    Role.VIEWER: "Reads everything in the organisation and changes nothing.",
    Role.AGENT: "Day-to-day operator: runs calls and edits agent drafts, scripts and flows.",
    Role.MANAGER: "Runs the operation: campaigns, phone numbers, publishing agents, alerting and teams.",
    Role.ADMIN: "Owns the organisation: billing, API keys, members and roles, settings and branding.",
    Role.SUPER_ADMIN: "Platform operator across every organisation; never granted through a membership.",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: their principal name and the role they act with."""

    subject: str
    role: Role


def actor_role(role_name: str) -> Role:
    """The ladder role a principal acts with (mesh services count as SUPER_ADMIN).

    Raises:
        PermissionDenied: the credential carries no role (an API key without one).

    """
    if role_name == "SERVICE":
        return Role.SUPER_ADMIN
    try:
        return Role.parse(role_name)
    except ValueError:
        raise PermissionDenied("this credential carries no role, so it cannot grant or change roles") from None


def membership_role(value: int, field: str = "role") -> Role:
    """A role a membership or invitation may hold, from its ``vocelio.team_hub.v1.Role`` number.

    Raises:
        InvalidArgument: unset, unknown, or SUPER_ADMIN.

    """
    if value == 0:
        raise InvalidArgument("a role is required", {field: "required"})
    try:
        role = Role(value)
    except ValueError:
        raise InvalidArgument("unknown role", {field: "one of GUEST, VIEWER, AGENT, MANAGER, ADMIN"}) from None
    if role is Role.SUPER_ADMIN:
        raise InvalidArgument(
            "SUPER_ADMIN is never a membership role", {field: "one of GUEST, VIEWER, AGENT, MANAGER, ADMIN"}
        )
    return role


def check_grant(actor: Actor, role: Role) -> None:
    """Raise unless the actor may give ``role`` to someone.

    Raises:
        PermissionDenied: the role is above the actor's own.

    """
    if not can_grant(actor.role, role):
        raise PermissionDenied(f"you cannot grant the role {role.name}: it is above your own role ({actor.role.name})")


def check_role_change(actor: Actor, target_user: str, current: Role, new: Role, admin_count: int) -> None:
    """Raise unless the actor may move a member from ``current`` to ``new``.

    Args:
        actor: who changes the role.
        target_user: the member's user, ``users/{id}``.
        current: the member's role now.
        new: the role asked for (already checked by :func:`membership_role`).
        admin_count: how many ADMINs the organisation has now, the member included.

    Raises:
        PermissionDenied: own role, a member above the actor, or a role above the actor's.
        FailedPrecondition: the member is the organisation's last ADMIN and would lose it.

    """
    if actor.subject == target_user:
        raise PermissionDenied("you cannot change your own role; ask another administrator")
    if current > actor.role:
        raise PermissionDenied(
            f"you cannot change the role of a member whose role ({current.name}) is above your own ({actor.role.name})"
        )
    check_grant(actor, new)
    if current is Role.ADMIN and new is not Role.ADMIN and admin_count <= 1:
        raise FailedPrecondition("the last ADMIN of an organisation cannot be demoted; make another member ADMIN first")


def check_removal(actor: Actor, target_user: str, current: Role, admin_count: int) -> None:
    """Raise unless the actor may remove a member (members may remove themselves: leaving).

    Raises:
        PermissionDenied: the member's role is above the actor's.
        FailedPrecondition: the member is the organisation's last ADMIN.

    """
    if actor.subject != target_user and current > actor.role:
        raise PermissionDenied(
            f"you cannot remove a member whose role ({current.name}) is above your own ({actor.role.name})"
        )
    if current is Role.ADMIN and admin_count <= 1:
        raise FailedPrecondition("the last ADMIN of an organisation cannot be removed; make another member ADMIN first")


def guest_expiry(
    role: Role, expire_time: datetime.datetime | None, now: datetime.datetime, field: str
) -> datetime.datetime | None:
    """The access end a role needs: required for GUEST (in the next 90 days), absent otherwise.

    Raises:
        InvalidArgument: missing or out of range for GUEST, or set for another role.

    """
    if role is not Role.GUEST:
        if expire_time is not None:
            raise InvalidArgument("only GUEST access expires", {field: "must be unset unless the role is GUEST"})
        return None
    if expire_time is None:
        raise InvalidArgument("GUEST access needs an end", {field: "required for GUEST"})
    if expire_time <= now or expire_time > now + GUEST_MAX_ACCESS:
        raise InvalidArgument("GUEST access end out of range", {field: "in the future, at most 90 days ahead"})
    return expire_time


def membership_active(expire_time: datetime.datetime | None, now: datetime.datetime) -> bool:
    """Whether a membership grants access now (a GUEST's ends at its expire_time)."""
    return expire_time is None or expire_time > now


def role_permissions(table: AccessTable, role: Role) -> list[str]:
    """Every permission a role holds, sorted; SUPER_ADMIN's ``*`` is spelled out."""
    permissions = table.permissions(role)
    if "*" in permissions:
        return sorted(table.all_permissions)
    return sorted(permissions)


def role_display_name(role: Role) -> str:
    """A role's human name ("Super admin", "Manager")."""
    return role.name.replace("_", " ").capitalize()
