"""Organisation RPCs: get, list, update, the lifecycle, and provisioning at sign-up."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role
from mesh.errors import InvalidArgument, PermissionDenied, Unimplemented
from mesh.kit import audit, etags, ids, paging
from mesh.kit.masks import UpdateMask
from mesh.kit.sql import flush
from mesh.principal import PrincipalKind, current
from services.team_hub import convert
from services.team_hub.domain import common
from services.team_hub.domain import organizations as rules
from services.team_hub.domain.organizations import OrganizationState, Plan, Transition
from services.team_hub.identity import organization_revocation, revocation
from services.team_hub.models import Membership, Organization
from services.team_hub.names import ORGANIZATIONS, USERS, organization_name
from services.team_hub.rpc.base import Context, RpcBase
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import organization_pb2
from vocelio.team_hub.v1 import team_hub_service_pb2 as pb

_MASK = UpdateMask.for_message(organization_pb2.Organization)
_STALE = "the organization changed while it was being updated; read it again and retry"

_TRANSITION_ACTIONS = {
    Transition.SUSPEND: audit_event_pb2.AUDIT_ACTION_ORGANIZATION_SUSPENDED,
    Transition.REACTIVATE: audit_event_pb2.AUDIT_ACTION_ORGANIZATION_REACTIVATED,
    Transition.CLOSE: audit_event_pb2.AUDIT_ACTION_ORGANIZATION_CLOSED,
}


def _plan(value: int, field: str) -> Plan:
    if value == organization_pb2.ORGANIZATION_PLAN_UNSPECIFIED:
        return Plan.TRIAL
    try:
        return Plan(organization_pb2.OrganizationPlan.Name(value).removeprefix("ORGANIZATION_PLAN_"))
    except ValueError:
        raise InvalidArgument("unknown plan", {field: "TRIAL, PAY_AS_YOU_GO or ENTERPRISE"}) from None


def _apply(row: Organization, message: organization_pb2.Organization, fields: set[str]) -> bool:
    """Copy the validated ``fields`` of ``message`` onto ``row``; whether anything changed."""
    values: dict[str, object] = {}
    if "display_name" in fields:
        values["display_name"] = common.display_name(message.display_name, "organization.display_name")
    if "billing_email" in fields:
        values["billing_email"] = common.email(message.billing_email, "organization.billing_email", required=False)
    if "country_code" in fields:
        values["country_code"] = common.country_code(message.country_code, "organization.country_code")
    if "labels" in fields:
        values["labels"] = common.labels(message.labels, "organization.labels")
    if "plan" in fields:
        values["plan"] = _plan(message.plan, "organization.plan").value
    if "concurrency_limit" in fields:
        values["concurrency_limit"] = rules.concurrency_limit(message.concurrency_limit)
    if "max_members" in fields:
        values["max_members"] = rules.max_members(message.max_members)
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


class OrganizationRpcs(RpcBase):
    """GetOrganization, ListOrganizations, UpdateOrganization, Suspend/Reactivate/Close, Provision."""

    async def GetOrganization(self, request: pb.GetOrganizationRequest, context: Context) -> pb.GetOrganizationResponse:
        """Get an organisation (the caller's own; any for SUPER_ADMIN)."""
        principal = current()
        organization_id = ORGANIZATIONS.parse(request.name)["organization"]
        async with self._sessions.begin() as session:
            row = await self._organization(session, principal, organization_id)
            counts = await organization_store.member_counts(session, [row.id])
        return pb.GetOrganizationResponse(organization=convert.organization(row, counts[row.id]))

    async def ListOrganizations(
        self, request: pb.ListOrganizationsRequest, context: Context
    ) -> pb.ListOrganizationsResponse:
        """List every organisation, newest first (platform operators only)."""
        principal = current()
        if not principal.is_platform_admin:
            raise PermissionDenied("only platform operators list organizations")
        size = paging.page_size(request.page_size)
        binding = paging.query_binding(request)
        after = self._page_tokens.decode_optional(request.page_token, binding)
        async with self._sessions.begin() as session:
            page = await organization_store.list_page(
                session, filter_text=request.filter, show_closed=request.show_closed, after=after, limit=size
            )
            counts = await organization_store.member_counts(session, [r.id for r in page.items])
        return pb.ListOrganizationsResponse(
            organizations=[convert.organization(r, counts[r.id]) for r in page.items],
            next_page_token="" if page.next_after is None else self._page_tokens.encode(page.next_after, binding),
        )

    async def UpdateOrganization(
        self, request: pb.UpdateOrganizationRequest, context: Context
    ) -> pb.UpdateOrganizationResponse:
        """Change an organisation's fields named in the update mask."""
        principal = current()
        message = request.organization
        organization_id = ORGANIZATIONS.parse(message.name, field="organization.name")["organization"]
        paths = list(request.update_mask.paths)
        fields = rules.update_fields(paths, _MASK.resolve(paths, message), platform_admin=principal.is_platform_admin)
        async with self._sessions.begin() as session:
            row = await self._organization(session, principal, organization_id)
            rules.ensure_writable(OrganizationState(row.state), platform_admin=principal.is_platform_admin)
            etags.check_etag(message.etag, row.etag_for(message.name), what="the organization")
            if _apply(row, message, fields):
                row.stamp_changed(principal.subject, self._clock.now())
                await flush(session, stale=_STALE)
            counts = await organization_store.member_counts(session, [row.id])
        return pb.UpdateOrganizationResponse(organization=convert.organization(row, counts[row.id]))

    async def SuspendOrganization(
        self, request: pb.SuspendOrganizationRequest, context: Context
    ) -> pb.SuspendOrganizationResponse:
        """ACTIVE → SUSPENDED."""
        reason = rules.reason(request.reason, required=True)
        row = await self._transition(request.name, Transition.SUSPEND, reason, context)
        return pb.SuspendOrganizationResponse(organization=row)

    async def ReactivateOrganization(
        self, request: pb.ReactivateOrganizationRequest, context: Context
    ) -> pb.ReactivateOrganizationResponse:
        """SUSPENDED → ACTIVE."""
        row = await self._transition(request.name, Transition.REACTIVATE, "", context)
        return pb.ReactivateOrganizationResponse(organization=row)

    async def CloseOrganization(
        self, request: pb.CloseOrganizationRequest, context: Context
    ) -> pb.CloseOrganizationResponse:
        """ACTIVE or SUSPENDED → CLOSED, revoking every member's tokens and sessions for it."""
        reason = rules.reason(request.reason, required=False) or "closed"
        row = await self._transition(
            request.name, Transition.CLOSE, reason, context, confirm=request.confirm_display_name
        )
        return pb.CloseOrganizationResponse(organization=row)

    async def _transition(
        self, name: str, action: Transition, reason: str, context: Context, *, confirm: str | None = None
    ) -> organization_pb2.Organization:
        principal = current()
        organization_id = ORGANIZATIONS.parse(name)["organization"]
        admin_of_it = (
            principal.kind is PrincipalKind.USER
            and principal.organization_id == organization_id
            and self._table.allows(Role.parse(principal.role), "organizations.close")
        )
        if not rules.may_transition(action, platform_admin=principal.is_platform_admin, admin_of_it=admin_of_it):
            detail = (
                "platform operators and the organization's ADMIN"
                if action is Transition.CLOSE
                else "platform operators"
            )
            raise PermissionDenied(f"only {detail} {action.value} organizations")
        required: list[str] = []
        async with self._sessions.begin() as session:
            row = await self._organization(session, principal, organization_id, lock=True)
            if confirm is not None and confirm.strip() != row.display_name:
                raise InvalidArgument(
                    "confirm_display_name does not match the organization",
                    {"confirm_display_name": "must equal the organization's display_name"},
                )
            target = rules.transition(OrganizationState(row.state), action)
            if target is not None:
                now = self._clock.now()
                row.state = target.value
                row.state_reason = reason
                row.suspend_time = now if target is OrganizationState.SUSPENDED else None
                row.close_time = now if target is OrganizationState.CLOSED else None
                row.stamp_changed(principal.subject, now)
                await flush(session, stale=_STALE)
                if target in (OrganizationState.SUSPENDED, OrganizationState.CLOSED):
                    # Every credential of the organisation (users' tokens, API keys, key tokens) stops working.
                    required = [await self._revoke_organization(session, row.id, action)]
                if target is OrganizationState.CLOSED:
                    required += await self._revoke_everyone(session, row.id)
                await self._audit(
                    session,
                    principal,
                    context,
                    row.id,
                    _TRANSITION_ACTIONS[action],
                    organization_name(row.id),
                    details={"reason": reason} if reason else None,
                )
            counts = await organization_store.member_counts(session, [row.id])
        await self._identity_calls.deliver(
            row.id,
            required=required,
            failure=f"the organization is {rules.past_tense(action)}, but identity could not be reached to revoke its "
            "credentials; retry the request",
        )
        return convert.organization(row, counts[row.id])

    async def _revoke_organization(self, session: AsyncSession, organization_id: str, action: Transition) -> str:
        """Queue the revocation of every credential of the organisation (identity's ORGANIZATION entry)."""
        name = organization_name(organization_id)
        return await self._identity_calls.enqueue(
            session,
            organization_id=organization_id,
            target=name,
            kind=audit.REVOKE,
            request=organization_revocation(
                organization_id,
                reason=f"organization_{rules.past_tense(action)}",
                end_sessions=action is Transition.CLOSE,
            ),
        )

    async def _revoke_everyone(self, session: AsyncSession, organization_id: str) -> list[str]:
        """Queue the revocation of every member's tokens and sessions in the organisation."""
        calls = []
        for user in await member_store.users(session, organization_id):
            calls.append(
                await self._identity_calls.enqueue(
                    session,
                    organization_id=organization_id,
                    target=organization_name(organization_id),
                    kind=audit.REVOKE,
                    request=revocation(user, organization_id, reason="organization_closed", end_sessions=True),
                )
            )
        return calls

    async def ProvisionOrganization(
        self, request: pb.ProvisionOrganizationRequest, context: Context
    ) -> pb.ProvisionOrganizationResponse:
        """Create an organisation and its first ADMIN (identity's sign-up); idempotent by request_id."""
        principal = current()
        if not principal.is_platform_admin:
            raise PermissionDenied("only mesh services provision organizations")
        admin_email = common.email(request.admin_email, "admin_email")
        if not request.admin_user:
            raise Unimplemented(
                "provisioning an organization for an e-mail address (a PENDING ADMIN invitation) arrives with "
                "e-mail delivery; pass admin_user"
            )
        admin_user = _user_name(request.admin_user, "admin_user")
        message = request.organization
        display_name = common.display_name(message.display_name, "organization.display_name")
        values = {
            "billing_email": common.email(message.billing_email, "organization.billing_email", required=False),
            "country_code": common.country_code(message.country_code, "organization.country_code"),
            "labels": common.labels(message.labels, "organization.labels"),
            "plan": _plan(message.plan, "organization.plan").value,
            "concurrency_limit": rules.concurrency_limit(message.concurrency_limit),
            "max_members": rules.max_members(message.max_members),
        }
        admin_name = request.admin_display_name.strip()[: common.MAX_DISPLAY_NAME]
        organization_id = ids.chosen_or_new(request.organization_id, "org", field="organization_id")
        parent = request.parent_organization_id
        async with self._sessions.begin() as session:
            # No organisation exists yet: the request_id's scope is the calling service's.
            claim = await self._idempotency.claim(
                session,
                method="ProvisionOrganization",
                organization_id="",
                principal=principal.subject,
                request=request,
                response_type=pb.ProvisionOrganizationResponse,
            )
            if claim.replay is not None:
                return claim.replay
            if parent and await organization_store.get(session, parent) is None:
                raise InvalidArgument(
                    "unknown parent organization", {"parent_organization_id": "an existing organization"}
                )
            now = self._clock.now()
            row = Organization(
                id=organization_id,
                display_name=display_name,
                state=OrganizationState.ACTIVE.value,
                state_reason="",
                parent_organization_id=parent,
                kyc_verified=False,
                member_epoch=0,
                revision=1,
                **values,
            )
            row.stamp_created(principal.subject, now)
            await organization_store.add(session, row)
            membership = Membership(
                id=ids.new_id("mem"),
                organization_id=row.id,
                user=admin_user,
                email=admin_email,
                display_name=admin_name,
                role=int(Role.ADMIN),
                expire_time=None,
                invitation_id="",
                join_time=now,
                revision=1,
            )
            membership.stamp_created(principal.subject, now)
            await member_store.add(session, membership)
            # Identity is the caller (inside its sign-up): the entry waits for the next
            # delivery in this organisation rather than calling identity back now.
            await self._audit(
                session,
                principal,
                context,
                row.id,
                audit_event_pb2.AUDIT_ACTION_ORGANIZATION_CREATED,
                organization_name(row.id),
                details={"admin_user": admin_user},
            )
            response = pb.ProvisionOrganizationResponse(
                organization=convert.organization(row, 1), membership=convert.membership(membership, [], now)
            )
            await claim.complete(session, response)
        return response


def _user_name(value: str, field: str) -> str:
    """A ``users/{id}`` name, as given."""
    USERS.parse(value, field=field)
    return value
