"""Membership RPCs: list, get, change role, remove, a user's memberships, and the role ladder."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role, can_grant
from mesh.errors import PermissionDenied
from mesh.kit import audit, etags, paging, tenancy
from mesh.kit.names import ParsedName
from mesh.kit.sql import flush
from mesh.principal import Principal, current
from services.team_hub import convert
from services.team_hub.domain import roles
from services.team_hub.domain.organizations import OrganizationState, ensure_writable
from services.team_hub.identity import revocation
from services.team_hub.models import Membership
from services.team_hub.names import MEMBERS, USERS
from services.team_hub.rpc.base import Context, RpcBase
from services.team_hub.store import identity_calls
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import team_hub_service_pb2 as pb

_ROLE_CHANGE_FAILURE = (
    "the role is changed, but identity could not be reached to revoke the member's current tokens; retry the request"
)
_STALE = "the membership changed while it was being updated; read it again and retry"
_REMOVAL_FAILURE = (
    "the member is removed, but identity could not be reached to revoke their tokens and sessions; retry the request"
)


class MemberRpcs(RpcBase):
    """ListMembers, GetMember, ChangeMemberRole, RemoveMember, ListUserMemberships, ListRoles."""

    async def ListMembers(self, request: pb.ListMembersRequest, context: Context) -> pb.ListMembersResponse:
        """List an organisation's members (every one's for ``organizations/-``) by display name."""
        scope = self._list_scope(current(), request.parent, MEMBERS)
        size = paging.page_size(request.page_size)
        binding = paging.query_binding(request, scope.binding())
        after = self._page_tokens.decode_optional(request.page_token, binding)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            page = await member_store.list_page(
                session, scope, filter_text=request.filter, now=now, after=after, limit=size
            )
            teams = await member_store.teams_of(session, [member_store.key(r) for r in page.items])
        return pb.ListMembersResponse(
            members=[convert.membership(r, teams[member_store.key(r)], now) for r in page.items],
            next_page_token="" if page.next_after is None else self._page_tokens.encode(page.next_after, binding),
        )

    async def GetMember(self, request: pb.GetMemberRequest, context: Context) -> pb.GetMemberResponse:
        """Get one membership."""
        principal = current()
        name = MEMBERS.parse(request.name)
        async with self._sessions.begin() as session:
            row = await self._membership(session, principal, name)
            teams = await member_store.teams_of(session, [member_store.key(row)])
        return pb.GetMemberResponse(membership=convert.membership(row, teams[member_store.key(row)], self._clock.now()))

    async def ChangeMemberRole(
        self, request: pb.ChangeMemberRoleRequest, context: Context
    ) -> pb.ChangeMemberRoleResponse:
        """Change a member's role (and a GUEST's access end), then revoke their current tokens."""
        principal = current()
        name = MEMBERS.parse(request.name)
        new_role = roles.membership_role(request.role, "role")
        now = self._clock.now()
        expire_time = roles.guest_expiry(new_role, convert.optional_time(request, "expire_time"), now, "expire_time")
        actor = self._actor(principal)
        async with self._sessions.begin() as session:
            await self._membership(session, principal, name)
            organization = await self._organization(session, principal, name.organization, lock=True)
            row = await self._membership(session, principal, name)  # re-read under the lock
            ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
            old_role = Role(row.role)
            admins = await member_store.count_admins(session, row.organization_id)
            roles.check_role_change(actor, row.user, old_role, new_role, admins)
            if old_role is new_role and row.expire_time == expire_time:
                # Already so (a retry): only what a first attempt may have left undelivered remains.
                required = await identity_calls.pending_for(session, row.organization_id, request.name)
            else:
                etags.check_etag(request.etag, row.etag_for(request.name), what="the membership")
                row.role = int(new_role)
                row.expire_time = expire_time
                row.stamp_changed(principal.subject, now)
                await flush(session, stale=_STALE)
                label = await self._actor_label(session, principal, row.organization_id)
                required = [
                    await self._identity_calls.enqueue(
                        session,
                        organization_id=row.organization_id,
                        target=request.name,
                        kind=audit.REVOKE,
                        request=revocation(row.user, row.organization_id, reason="role_changed", end_sessions=False),
                    )
                ]
                await self._audit(
                    session,
                    principal,
                    context,
                    row.organization_id,
                    audit_event_pb2.AUDIT_ACTION_ROLE_CHANGED,
                    request.name,
                    label,
                    {"old_role": old_role.name, "new_role": new_role.name, "user": row.user},
                )
            teams = await member_store.teams_of(session, [member_store.key(row)])
        await self._identity_calls.deliver(row.organization_id, required=required, failure=_ROLE_CHANGE_FAILURE)
        return pb.ChangeMemberRoleResponse(membership=convert.membership(row, teams[member_store.key(row)], now))

    async def RemoveMember(self, request: pb.RemoveMemberRequest, context: Context) -> pb.RemoveMemberResponse:
        """Remove a member from the organisation and its teams, and revoke their tokens and sessions."""
        principal = current()
        name = MEMBERS.parse(request.name)
        organization_id = name.organization
        actor = self._actor(principal)
        async with self._sessions.begin() as session:
            row = await member_store.get(session, organization_id, name["member"])
            if not self._readable(principal, name):
                raise tenancy.not_found(request.name)
            if row is None:
                # A retry (after UNAVAILABLE, or a lost answer): the identity calls remember
                # the removal for a while; finish what they still owe identity and succeed.
                if not await identity_calls.known_target(session, organization_id, request.name):
                    raise tenancy.not_found(request.name)
                required = await identity_calls.pending_for(session, organization_id, request.name)
                removed_user = await identity_calls.revoked_principal(session, organization_id, request.name)
            else:
                organization = await self._organization(session, principal, organization_id, lock=True)
                row = await self._membership(session, principal, name)
                ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
                etags.check_etag(request.etag, row.etag_for(request.name), what="the membership")
                admins = await member_store.count_admins(session, organization_id)
                roles.check_removal(actor, row.user, Role(row.role), admins)
                label = await self._actor_label(session, principal, organization_id)
                await member_store.remove(session, row)
                removed_user = row.user
                required = [
                    await self._identity_calls.enqueue(
                        session,
                        organization_id=organization_id,
                        target=request.name,
                        kind=audit.REVOKE,
                        request=revocation(row.user, organization_id, reason="member_removed", end_sessions=True),
                    )
                ]
                await self._audit(
                    session,
                    principal,
                    context,
                    organization_id,
                    audit_event_pb2.AUDIT_ACTION_MEMBER_REMOVED,
                    request.name,
                    label,
                    {"user": row.user, "email": row.email, "role": Role(row.role).name},
                )
        await self._identity_calls.deliver(organization_id, required=required, failure=_REMOVAL_FAILURE)
        if removed_user:
            # Their API keys die with the membership (unless transferred before).
            await self._developer_api.revoke_keys_of(removed_user, organization_id)
        return pb.RemoveMemberResponse()

    async def ListUserMemberships(
        self, request: pb.ListUserMembershipsRequest, context: Context
    ) -> pb.ListUserMembershipsResponse:
        """A user's memberships in every organisation, oldest first (identity, at token time)."""
        principal = current()
        USERS.parse(request.user, field="user")
        if not principal.is_platform_admin and principal.subject != request.user:
            raise PermissionDenied("only mesh services list another user's memberships")
        size = paging.page_size(request.page_size, default=100)
        binding = paging.query_binding(request)
        after = self._page_tokens.decode_optional(request.page_token, binding)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            pairs, next_after = await member_store.list_for_user(
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
            next_page_token="" if next_after is None else self._page_tokens.encode(next_after, binding),
        )

    async def ListRoles(self, request: pb.ListRolesRequest, context: Context) -> pb.ListRolesResponse:
        """The role ladder, GUEST first, with each role's permissions and whether the caller may grant it."""
        principal = current()
        try:
            own: Role | None = roles.actor_role(principal.role)
        except PermissionDenied:
            own = None
        ladder = list(Role)
        binding = paging.query_binding(request)
        after = self._page_tokens.decode_optional(request.page_token, binding)
        start = 0 if after is None else int(paging.position_shape(after, int)[0])
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
            next_page_token=self._page_tokens.encode([end], binding) if end < len(ladder) else "",
        )

    @staticmethod
    async def _membership(session: AsyncSession, principal: Principal, name: ParsedName) -> Membership:
        """A membership the caller may see.

        Raises:
            NotFound: it does not exist, or is in another organisation (the same answer).

        """
        row = await member_store.get(session, name.organization, name["member"])
        if row is None or tenancy.read_scope_for_name(principal, name.organization) is None:
            raise tenancy.not_found(name.name)
        return row
