"""Rows to protobuf messages (and request timestamps to datetimes)."""

from __future__ import annotations

import datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.access import Role
from services.team_hub.domain import invitations, roles
from services.team_hub.models import Invitation, Membership, Organization, Team, TeamMember
from services.team_hub.names import invitation_name, member_name, organization_name, team_name
from vocelio.team_hub.v1 import invitation_pb2, member_pb2, organization_pb2, team_pb2


def optional_time(message: Message, field: str) -> datetime.datetime | None:
    """A request's Timestamp field as an aware UTC datetime, or ``None`` when unset."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=datetime.UTC)


def organization(row: Organization, member_count: int) -> organization_pb2.Organization:
    """An Organization message."""
    name = organization_name(row.id)
    return organization_pb2.Organization(
        name=name,
        organization_id=row.id,
        display_name=row.display_name,
        state=f"ORGANIZATION_STATE_{row.state}",
        state_reason=row.state_reason,
        plan=f"ORGANIZATION_PLAN_{row.plan}",
        concurrency_limit=row.concurrency_limit,
        max_members=row.max_members,
        member_count=member_count,
        parent_organization_id=row.parent_organization_id,
        billing_email=row.billing_email,
        country_code=row.country_code,
        kyc_verified=row.kyc_verified,
        suspend_time=row.suspend_time,
        close_time=row.close_time,
        labels=row.labels,
        audit=row.audit_info(),
        etag=row.etag_for(name),
    )


def membership_name(row: Membership) -> str:
    """``organizations/{organization}/members/{member}``."""
    return member_name(row.organization_id, row.id)


def membership(row: Membership, team_ids: list[str], now: datetime.datetime) -> member_pb2.Membership:
    """A Membership message (its state follows the clock for a GUEST)."""
    active = roles.membership_active(row.expire_time, now)
    name = membership_name(row)
    return member_pb2.Membership(
        name=name,
        organization_id=row.organization_id,
        user=row.user,
        email=row.email,
        display_name=row.display_name,
        role=member_pb2.Role.Name(row.role),
        state=member_pb2.MEMBERSHIP_STATE_ACTIVE if active else member_pb2.MEMBERSHIP_STATE_EXPIRED,
        expire_time=row.expire_time,
        teams=[team_name(row.organization_id, team_id) for team_id in team_ids],
        invitation=invitation_name(row.organization_id, row.invitation_id) if row.invitation_id else "",
        join_time=row.join_time,
        audit=row.audit_info(),
        etag=row.etag_for(name),
    )


def invitation(row: Invitation, now: datetime.datetime) -> invitation_pb2.Invitation:
    """An Invitation message (never its token; PENDING past its expiry reads EXPIRED)."""
    state = invitations.effective_state(invitations.InvitationState(row.state), row.expire_time, now)
    return invitation_pb2.Invitation(
        name=invitation_name(row.organization_id, row.id),
        organization_id=row.organization_id,
        email=row.email,
        role=member_pb2.Role.Name(row.role),
        teams=[team_name(row.organization_id, team_id) for team_id in row.teams],
        member_expire_time=row.member_expire_time,
        message=row.message,
        state=f"INVITATION_STATE_{state.value}",
        expire_time=row.expire_time,
        inviter=row.inviter,
        accept_time=row.accept_time,
        accepted_by=row.accepted_by,
        membership=member_name(row.organization_id, row.membership_id) if row.membership_id else "",
        revoke_time=row.revoke_time,
        last_send_time=row.last_send_time,
        audit=row.audit_info(),
    )


def team(row: Team, members: list[tuple[TeamMember, Membership]]) -> team_pb2.Team:
    """A Team message with its members."""
    name = team_name(row.organization_id, row.id)
    return team_pb2.Team(
        name=name,
        organization_id=row.organization_id,
        display_name=row.display_name,
        description=row.description,
        members=[
            team_pb2.TeamMember(
                member=membership_name(m),
                user=m.user,
                display_name=m.display_name,
                lead=place.lead,
                add_time=place.add_time,
            )
            for place, m in members
        ],
        member_count=len(members),
        labels=row.labels,
        audit=row.audit_info(),
        etag=row.etag_for(name),
    )


def role_definition(role: Role, permissions: list[str], grantable: bool) -> member_pb2.RoleDefinition:
    """A RoleDefinition message."""
    return member_pb2.RoleDefinition(
        name=f"roles/{role.name.lower()}",
        role=member_pb2.Role.Name(int(role)),
        display_name=roles.role_display_name(role),
        description=roles.ROLE_DESCRIPTIONS[role],
        permissions=permissions,
        grantable=grantable,
    )
