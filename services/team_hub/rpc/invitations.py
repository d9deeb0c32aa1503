"""Invitation RPCs: create, get, list, revoke, accept (signed-in users) and redeem (identity's sign-up)."""

from __future__ import annotations

import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role
from mesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mesh.kit import ids, paging, tenancy
from mesh.kit.names import ParsedName
from mesh.kit.sql import flush
from mesh.principal import Principal, PrincipalKind, current
from services.team_hub import convert
from services.team_hub.domain import common, invitations
from services.team_hub.domain.invitations import InvitationState
from services.team_hub.domain.organizations import OrganizationState, ensure_writable
from services.team_hub.domain.teams import MAX_TEAM_MEMBERS
from services.team_hub.models import Invitation, Membership, Organization, TeamMember
from services.team_hub.names import INVITATIONS, USERS, invitation_name, member_name, team_name
from services.team_hub.rpc.base import Context, RpcBase
from services.team_hub.store import invitations as invitation_store
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from services.team_hub.store import teams as team_store
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import team_hub_service_pb2 as pb

# AcceptInvitation answers every unusable token the same way: no oracle.
_UNUSABLE = "invitation not found, revoked, expired or already used"


_INACTIVE = "the inviting organization is not active"
_STALE = "the invitation changed while it was being revoked; read it again and retry"


class InvitationRpcs(RpcBase):
    """CreateInvitation, GetInvitation, ListInvitations, RevokeInvitation, AcceptInvitation, RedeemInvitation."""

    async def CreateInvitation(
        self, request: pb.CreateInvitationRequest, context: Context
    ) -> pb.CreateInvitationResponse:
        """Invite an address to an organisation; the token is in this response only."""
        principal = current()
        organization_id = self._write_parent(principal, request.parent, INVITATIONS)
        message = request.invitation
        now = self._clock.now()
        spec = invitations.validate_new(
            self._actor(principal),
            organization_id=organization_id,
            email=message.email,
            role=message.role,
            teams=list(message.teams),
            member_expire_time=convert.optional_time(message, "member_expire_time"),
            message=message.message,
            expire_time=convert.optional_time(message, "expire_time"),
            now=now,
        )
        async with self._sessions.begin() as session:
            organization = await self._organization(session, principal, organization_id, lock=True)
            ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
            claim = await self._idempotency.claim(
                session,
                method="CreateInvitation",
                organization_id=organization_id,
                principal=principal.subject,
                request=request,
                response_type=pb.CreateInvitationResponse,
            )
            if claim.replay is not None:
                return await self._replayed(session, claim.replay)
            await self._check_new(session, organization, spec, now)
            salt = invitations.new_salt() if request.request_id else None
            token = invitations.derived_token(self._token_key, salt) if salt else invitations.new_token()
            row = Invitation(
                id=ids.new_id("inv"),
                organization_id=organization_id,
                email=spec.email,
                role=int(spec.role),
                teams=list(spec.teams),
                member_expire_time=spec.member_expire_time,
                message=spec.message,
                state=InvitationState.PENDING.value,
                expire_time=spec.expire_time,
                inviter=principal.subject,
                accepted_by="",
                membership_id="",
                token_hash=invitations.token_hash(token),
                token_salt=salt,
                revision=1,
            )
            row.stamp_created(principal.subject, now)
            await invitation_store.add(session, row)
            name = invitation_name(row.organization_id, row.id)
            label = await self._actor_label(session, principal, organization_id)
            await self._audit(
                session,
                principal,
                context,
                organization_id,
                audit_event_pb2.AUDIT_ACTION_INVITATION_CREATED,
                name,
                label,
                {"email": spec.email, "role": spec.role.name},
            )
            # accept_uri needs the console's address (and white_label's custom domains), which
            # no configuration carries yet; the caller builds the link from the token.
            response = pb.CreateInvitationResponse(invitation=convert.invitation(row, now), invitation_token=token)
            # The token is never stored with the response: a replay derives it again.
            await claim.complete(session, response, redact=_without_token)
        await self._audit_port.deliver(organization_id)
        return response

    async def _replayed(self, session: AsyncSession, first: pb.CreateInvitationResponse) -> pb.CreateInvitationResponse:
        """The first response of a retried CreateInvitation, with its token derived again."""
        name = INVITATIONS.parse(first.invitation.name)
        row = await invitation_store.get(session, name.organization, name["invitation"])
        replay = pb.CreateInvitationResponse()
        replay.CopyFrom(first)
        if row is not None and row.token_salt:
            token = invitations.derived_token(self._token_key, row.token_salt)
            # A configured key changed since the first answer cannot show the token again.
            replay.invitation_token = token if invitations.token_hash(token) == row.token_hash else ""
        return replay

    async def _check_new(
        self,
        session: AsyncSession,
        organization: Organization,
        spec: invitations.InvitationSpec,
        now: datetime.datetime,
    ) -> None:
        if await member_store.email_taken(session, organization.id, spec.email):
            raise AlreadyExists(f"{spec.email} is already a member of this organization")
        await invitation_store.expire_stale(session, organization.id, spec.email, now)
        if await invitation_store.has_pending(session, organization.id, spec.email, now):
            raise AlreadyExists(f"{spec.email} already has a pending invitation; revoke it to invite again")
        invitations.check_capacity(
            max_members=organization.max_members,
            members=await member_store.count(session, organization.id),
            pending=await invitation_store.pending_count(session, organization.id, now),
        )
        missing = sorted(set(spec.teams) - await team_store.existing_ids(session, organization.id, spec.teams))
        if missing:
            raise invitations.unknown_team(team_name(organization.id, missing[0]))

    async def GetInvitation(self, request: pb.GetInvitationRequest, context: Context) -> pb.GetInvitationResponse:
        """Get one invitation."""
        principal = current()
        name = INVITATIONS.parse(request.name)
        async with self._sessions.begin() as session:
            row = await _invitation(session, principal, name)
        return pb.GetInvitationResponse(invitation=convert.invitation(row, self._clock.now()))

    async def ListInvitations(self, request: pb.ListInvitationsRequest, context: Context) -> pb.ListInvitationsResponse:
        """List an organisation's invitations, newest first."""
        scope = self._list_scope(current(), request.parent, INVITATIONS)
        size = paging.page_size(request.page_size)
        binding = paging.query_binding(request, scope.binding())
        after = self._page_tokens.decode_optional(request.page_token, binding)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            page = await invitation_store.list_page(
                session, scope, filter_text=request.filter, now=now, after=after, limit=size
            )
        return pb.ListInvitationsResponse(
            invitations=[convert.invitation(r, now) for r in page.items],
            next_page_token="" if page.next_after is None else self._page_tokens.encode(page.next_after, binding),
        )

    async def RevokeInvitation(
        self, request: pb.RevokeInvitationRequest, context: Context
    ) -> pb.RevokeInvitationResponse:
        """Withdraw a PENDING invitation (repeating it is a no-op)."""
        principal = current()
        name = INVITATIONS.parse(request.name)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await _invitation(session, principal, name)
            organization = await self._organization(session, principal, row.organization_id)
            ensure_writable(OrganizationState(organization.state), platform_admin=principal.is_platform_admin)
            state = invitations.effective_state(InvitationState(row.state), row.expire_time, now)
            if invitations.check_revoke(state):
                row.state = InvitationState.REVOKED.value
                row.revoke_time = now
                row.stamp_changed(principal.subject, now)
                await flush(session, stale=_STALE)
                label = await self._actor_label(session, principal, row.organization_id)
                await self._audit(
                    session,
                    principal,
                    context,
                    row.organization_id,
                    audit_event_pb2.AUDIT_ACTION_INVITATION_REVOKED,
                    request.name,
                    label,
                    {"email": row.email, "role": Role(row.role).name},
                )
        await self._audit_port.deliver(row.organization_id)
        return pb.RevokeInvitationResponse(invitation=convert.invitation(row, now))

    async def AcceptInvitation(
        self, request: pb.AcceptInvitationRequest, context: Context
    ) -> pb.AcceptInvitationResponse:
        """Join the inviting organisation as the signed-in caller, whose verified e-mail must be the invited one."""
        principal = current()
        if principal.kind is not PrincipalKind.USER:
            raise PermissionDenied("only a signed-in user can accept an invitation")
        token = request.invitation_token.strip()
        if not invitations.well_formed_token(token):
            raise NotFound(_UNUSABLE)
        email, display_name, email_verified = await self._identity.user_email(principal.subject)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await invitation_store.by_token_hash(session, invitations.token_hash(token))
            if row is None:
                raise NotFound(_UNUSABLE)
            state = invitations.effective_state(InvitationState(row.state), row.expire_time, now)
            decision = invitations.acceptable(state, accepted_by=row.accepted_by, user=principal.subject)
            if decision is None:
                raise NotFound(_UNUSABLE)
            if decision:
                invitations.check_acceptor(invited_email=row.email, user_email=email, email_verified=email_verified)
                membership = await self._join(session, row, principal.subject, email, display_name, now, principal)
                await self._audit(
                    session,
                    principal,
                    context,
                    row.organization_id,
                    audit_event_pb2.AUDIT_ACTION_INVITATION_ACCEPTED,
                    invitation_name(row.organization_id, row.id),
                    email.strip().lower(),
                    {"role": Role(row.role).name, "membership": member_name(row.organization_id, row.membership_id)},
                )
            else:
                membership = await self._joined(session, row)
            teams = await member_store.teams_of(session, [member_store.key(membership)])
        if decision:
            await self._audit_port.deliver(row.organization_id)
        return pb.AcceptInvitationResponse(
            membership=convert.membership(membership, teams[member_store.key(membership)], now),
            invitation=convert.invitation(row, now),
        )

    async def RedeemInvitation(
        self, request: pb.RedeemInvitationRequest, context: Context
    ) -> pb.RedeemInvitationResponse:
        """Create the membership of a user identity has just signed up with an invitation token."""
        principal = current()
        if not principal.is_platform_admin:
            raise PermissionDenied("only mesh services redeem invitations")
        token = request.invitation_token.strip()
        if not invitations.well_formed_token(token):
            raise InvalidArgument("malformed invitation token", {"invitation_token": "43 base64url characters"})
        USERS.parse(request.user, field="user")
        email = common.email(request.email, "email")
        display_name = request.display_name.strip()[: common.MAX_DISPLAY_NAME]
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await invitation_store.by_token_hash(session, invitations.token_hash(token))
            if row is None:
                raise NotFound("invitation not found")
            state = invitations.effective_state(InvitationState(row.state), row.expire_time, now)
            create = invitations.check_redeem(
                state, accepted_by=row.accepted_by, user=request.user, invited_email=row.email, user_email=email
            )
            if request.validate_only:
                organization = await organization_store.get(session, row.organization_id)
                if organization is None or organization.state != OrganizationState.ACTIVE.value:
                    raise FailedPrecondition(_INACTIVE)
                return _redemption_preview(row, request.user, email, display_name, now)
            if create:
                membership = await self._join(session, row, request.user, email, display_name, now, principal)
                # Identity is the caller (inside its sign-up): the event waits for the next
                # delivery in this organisation rather than calling identity back now.
                await self._audit(
                    session,
                    principal,
                    context,
                    row.organization_id,
                    audit_event_pb2.AUDIT_ACTION_INVITATION_ACCEPTED,
                    invitation_name(row.organization_id, row.id),
                    "",
                    {
                        "role": Role(row.role).name,
                        "membership": member_name(row.organization_id, row.membership_id),
                        "user": request.user,
                    },
                )
            else:
                membership = await self._joined(session, row)
            teams = await member_store.teams_of(session, [member_store.key(membership)])
        return pb.RedeemInvitationResponse(
            membership=convert.membership(membership, teams[member_store.key(membership)], now),
            invitation=convert.invitation(row, now),
        )

    async def _join(
        self,
        session: AsyncSession,
        row: Invitation,
        user: str,
        email: str,
        display_name: str,
        now: datetime.datetime,
        principal: Principal,
    ) -> Membership:
        """Create the membership an invitation grants and mark the invitation ACCEPTED."""
        organization = await organization_store.lock(session, row.organization_id)
        if organization is None or organization.state != OrganizationState.ACTIVE.value:
            raise FailedPrecondition(_INACTIVE)
        membership = Membership(
            id=ids.new_id("mem"),
            organization_id=row.organization_id,
            user=user,
            email=email.strip().lower(),
            display_name=display_name,
            role=row.role,
            expire_time=invitations.guest_access_end(Role(row.role), row.member_expire_time, now),
            invitation_id=row.id,
            join_time=now,
            revision=1,
        )
        membership.stamp_created(principal.subject, now)
        if await member_store.find_by_user(session, row.organization_id, user) is not None:
            raise AlreadyExists("the user is already a member of the inviting organization")
        await member_store.add(session, membership)
        if not await invitation_store.mark_accepted(session, row, user=user, membership_id=membership.id, now=now):
            raise FailedPrecondition("invitation already used")
        for team_id in sorted(await team_store.existing_ids(session, row.organization_id, row.teams)):
            if await team_store.member_count(session, row.organization_id, team_id) < MAX_TEAM_MEMBERS:
                await team_store.add_place(
                    session,
                    TeamMember(
                        organization_id=row.organization_id,
                        team_id=team_id,
                        membership_id=membership.id,
                        lead=False,
                        add_time=now,
                    ),
                )
        return membership

    @staticmethod
    async def _joined(session: AsyncSession, row: Invitation) -> Membership:
        """The membership an invitation already created (it may have been removed since)."""
        membership = (
            await member_store.get(session, row.organization_id, row.membership_id) if row.membership_id else None
        )
        if membership is None:
            raise FailedPrecondition("invitation already used; its membership was removed since")
        return membership


async def _invitation(session: AsyncSession, principal: Principal, name: ParsedName) -> Invitation:
    """An invitation the caller may see.

    Raises:
        NotFound: it does not exist, or is in another organisation (the same answer).

    """
    row = await invitation_store.get(session, name.organization, name["invitation"])
    if row is None or tenancy.read_scope_for_name(principal, name.organization) is None:
        raise tenancy.not_found(name.name)
    return row


def _redemption_preview(
    row: Invitation, user: str, email: str, display_name: str, now: datetime.datetime
) -> pb.RedeemInvitationResponse:
    """What a redemption would answer, for ``validate_only``: the membership it would create, unnamed."""
    membership = Membership(
        id=ids.new_id("mem"),  # never stored; the preview carries no name
        organization_id=row.organization_id,
        user=user,
        email=email,
        display_name=display_name,
        role=row.role,
        expire_time=invitations.guest_access_end(Role(row.role), row.member_expire_time, now),
        invitation_id=row.id,
        join_time=now,
        revision=1,
    )
    membership.stamp_created(user, now)
    preview = convert.membership(membership, [], now)
    preview.name = ""
    return pb.RedeemInvitationResponse(membership=preview, invitation=convert.invitation(row, now))


def _without_token(response: pb.CreateInvitationResponse) -> pb.CreateInvitationResponse:
    stored = pb.CreateInvitationResponse()
    stored.CopyFrom(response)
    stored.invitation_token = ""
    stored.accept_uri = ""
    return stored
