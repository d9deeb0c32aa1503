"""Membership RPCs: list, get, change role, remove, a user's memberships, and the role ladder."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role, can_grant
from mesh.errors import InvalidArgument, NotFound, PermissionDenied
from mesh.principal import current
from services.team_hub import convert
from services.team_hub.domain import common, filters, paging, roles
from services.team_hub.domain.organizations import OrganizationState, ensure_writable
from services.team_hub.identity import RequestInfo, revocation
from services.team_hub.models import Membership
from services.team_hub.rpc.base import Context, RpcBase
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from services.team_hub.store import outbox
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import team_hub_service_pb2 as pb

_ROLE_CHANGE_FAILURE = (
    "the role is changed, but identity could not be reached to revoke the member's current tokens; retry the request"
)
# The one answer for a membership that is missing or in another organisation.
_NOT_FOUND = "member not found"
_REMOVAL_FAILURE = (
    "the member is removed, but identity could not be reached to revoke their tokens and sessions; retry the request"
)


class MemberRpcs(RpcBase):
    """ListMembers, GetMember, ChangeMemberRole, RemoveMember, ListUserMemberships, ListRoles."""

    async def ListMembers(self, request: pb.ListMembersRequest, context: Context) -> pb.ListMembersResponse:
        """List an organisation's members by display name."""
        principal = current()
        organization_id = self._parent(principal, request.parent)
        conditions = filters.parse(request.filter, member_store.FILTERABLE)
        size = paging.page_size(request.page_size)
        bound = paging.fingerprint("members", organization_id, request.filter)
        after = paging.decode_token(request.page_token, bound)
        now = self._now()
        async with self._sessions.begin() as session:
            rows, next_key = await member_store.list_page(
                session, organization_id, conditions=conditions, now=now, after=after, limit=size
            )
            teams = await member_store.teams_of(session, [member_store.key(r) for r in rows])
        return pb.ListMembersResponse(
            members=[convert.membership(r, teams[member_store.key(r)], now) for r in rows],
            next_page_token=paging.encode_token(next_key, bound) if next_key else "",
        )

    async def GetMember(self, request: pb.GetMemberRequest, context: Context) -> pb.GetMemberResponse:
        """Get one membership."""
        principal = current()
        organization_id, membership_id = self._child(principal, request.name, "members", _NOT_FOUND)
        async with self._sessions.begin() as session:
            row = await _membership(session, organization_id, membership_id)
            teams = await member_store.teams_of(session, [member_store.key(row)])
        return pb.GetMemberResponse(membership=convert.membership(row, teams[member_store.key(row)], self._now()))

    async def ChangeMemberRole(
        self, request: pb.ChangeMemberRoleRequest, context: Context
    ) -> pb.ChangeMemberRoleResponse:
        """Change a member's role (and a GUEST's access end), then revoke their current tokens."""
        principal = current()
        organization_id, membership_id = self._child(principal, request.name, "members", _NOT_FOUND)
        new_role = roles.membership_role(request.role, "role")
        now = self._now()
        expire_time = roles.guest_expiry(new_role, convert.optional_time(request, "expire_time"), now, "expire_time")
        actor = self._actor(principal)
        info = RequestInfo.of(context)
        async with self._sessions.begin() as session:
            await _membership(session, organization_id, membership_id)
            organization = await self._organization(session, principal, organization_id, lock=True)
            row = await _membership(session, organization_id, membership_id)  # re-read under the lock
            ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
            old_role = Role(row.role)
            admins = await member_store.count_admins(session, row.organization_id)
            roles.check_role_change(actor, row.user, old_role, new_role, admins)
            if old_role is new_role and row.expire_time == expire_time:
                # Already so (a retry): only what a first attempt may have left undelivered remains.
                required = await outbox.pending_for(session, row.organization_id, request.name)
            else:
                common.check_etag(request.etag, request.name, row.version)
                row.role = int(new_role)
                row.expire_time = expire_time
                row.version += 1
                row.update_time = now
                row.last_modifier = principal.subject
                await session.flush()
                label = await self._actor_label(session, principal, row.organization_id)
                required = [
                    await outbox.enqueue(
                        session,
                        organization_id=row.organization_id,
                        target=request.name,
                        kind=outbox.REVOKE,
                        payload=revocation(row.user, row.organization_id, reason="role_changed", end_sessions=False),
                        now=now,
                    )
                ]
                await self._audit(
                    session,
                    principal,
                    info,
                    row.organization_id,
                    audit_event_pb2.AUDIT_ACTION_ROLE_CHANGED,
                    request.name,
                    now,
                    label,
                    {"old_role": old_role.name, "new_role": new_role.name, "user": row.user},
                )
            teams = await member_store.teams_of(session, [member_store.key(row)])
        await self._identity.deliver(row.organization_id, required=required, failure=_ROLE_CHANGE_FAILURE)
        return pb.ChangeMemberRoleResponse(membership=convert.membership(row, teams[member_store.key(row)], now))

    async def RemoveMember(self, request: pb.RemoveMemberRequest, context: Context) -> pb.RemoveMemberResponse:
        """Remove a member from the organisation and its teams, and revoke their tokens and sessions."""
        principal = current()
        organization_id, membership_id = self._child(principal, request.name, "members", _NOT_FOUND)
        actor = self._actor(principal)
        info = RequestInfo.of(context)
        now = self._now()
        async with self._sessions.begin() as session:
            row = await member_store.get(session, organization_id, membership_id)
            if row is None:
                # A retry (after UNAVAILABLE, or a lost answer): the outbox remembers the
                # removal for a while; finish what it still owes identity and succeed.
                if not await outbox.known_target(session, organization_id, request.name):
                    raise NotFound(_NOT_FOUND)
                required = await outbox.pending_for(session, organization_id, request.name)
            else:
                organization = await self._organization(session, principal, organization_id, lock=True)
                row = await _membership(session, organization_id, membership_id)
                ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
                common.check_etag(request.etag, request.name, row.version)
                admins = await member_store.count_admins(session, organization_id)
                roles.check_removal(actor, row.user, Role(row.role), admins)
                label = await self._actor_label(session, principal, organization_id)
                await member_store.remove(session, row)
                required = [
                    await outbox.enqueue(
                        session,
                        organization_id=organization_id,
                        target=request.name,
                        kind=outbox.REVOKE,
                        payload=revocation(row.user, organization_id, reason="member_removed", end_sessions=True),
                        now=now,
                    )
                ]
                await self._audit(
                    session,
                    principal,
                    info,
                    organization_id,
                    audit_event_pb2.AUDIT_ACTION_MEMBER_REMOVED,
                    request.name,
                    now,
                    label,
                    {"user": row.user, "email": row.email, "role": Role(row.role).name},
                )
        await self._identity.deliver(organization_id, required=required, failure=_REMOVAL_FAILURE)
        return pb.RemoveMemberResponse()

    async def ListUserMemberships(
        self, request: pb.ListUserMembershipsRequest, context: Context
    ) -> pb.ListUserMembershipsResponse:
        """A user's memberships in every organisation, oldest first (identity, at token time)."""
        principal = current()
        common.parse_name(request.user, "users", "user")
        if not principal.is_platform_admin and principal.subject != request.user:
            raise PermissionDenied("only mesh services list another user's memberships")
        size = paging.page_size(request.page_size, default=100)
        bound = paging.fingerprint("user_memberships", request.user, request.show_inactive)
        after = paging.decode_token(request.page_token, bound)
        now = self._now()
        async with self._sessions.begin() as session:
            pairs, next_key = await member_store.list_for_user(
                session, request.user, show_inactive=request.show_inactive, now=now, after=after, limit=size
            )
            organization_ids = sorted({organization.id for _, organization in pairs})
            counts = await organization_store.member_counts(session, organization_ids)
            teams = await member_store.teams_of(session, [member_store.key(membership) for membership, _ in pairs])
        return pb.ListUserMembershipsResponse(
            user_memberships=[
                pb.UserMembership(
                    membership=convert.membership(membership, teams[member_store.key(membership)], now),
                    organization=convert.organization(organization, counts[organization.id]),
                )
                for membership, organization in pairs
            ],
            next_page_token=paging.encode_token(next_key, bound) if next_key else "",
        )

    async def ListRoles(self, request: pb.ListRolesRequest, context: Context) -> pb.ListRolesResponse:
        """The role ladder, GUEST first, with each role's permissions and whether the caller may grant it."""
        principal = current()
        try:
            own: Role | None = roles.actor_role(principal.role)
        except PermissionDenied:
            own = None
        ladder = list(Role)
        bound = paging.fingerprint("roles")
        after = paging.decode_token(request.page_token, bound)
        start = 0
        if after is not None:
            if len(after) != 1 or not isinstance(after[0], int) or not 0 <= after[0] <= len(ladder):
                raise InvalidArgument("invalid page_token", {"page_token": "use next_page_token as given"})
            start = after[0]
        size = len(ladder) if request.page_size == 0 else paging.page_size(request.page_size)
        page = ladder[start : start + size]
        end = start + len(page)
        return pb.ListRolesResponse(
            roles=[
                convert.role_definition(
                    role,
                    roles.role_permissions(self._table, role),
                    grantable=own is not None and role is not Role.SUPER_ADMIN and can_grant(own, role),
                )
                for role in page
            ],
            next_page_token=paging.encode_token([end], bound) if end < len(ladder) else "",
        )


async def _membership(session: AsyncSession, organization_id: str, membership_id: str) -> Membership:
    """A membership of the organisation (which the caller may see: checked by ``_child``).

    Raises:
        NotFound: no such membership in the organisation.

    """
    row = await member_store.get(session, organization_id, membership_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    return row
