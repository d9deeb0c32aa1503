"""Organisation RPCs: get, list, update, the lifecycle, and provisioning at sign-up."""

from __future__ import annotations

import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role
from mesh.errors import InvalidArgument, PermissionDenied, Unimplemented
from mesh.principal import current
from services.team_hub import convert
from services.team_hub.domain import common, filters, paging
from services.team_hub.domain import organizations as rules
from services.team_hub.domain.organizations import OrganizationState, Plan, Transition
from services.team_hub.identity import RequestInfo, revocation
from services.team_hub.models import Membership, Organization
from services.team_hub.rpc.base import Context, RpcBase
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from services.team_hub.store import outbox
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import organization_pb2
from vocelio.team_hub.v1 import team_hub_service_pb2 as pb

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
        organization_id = common.parse_name(request.name, "organizations")
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
        conditions = filters.parse(request.filter, organization_store.FILTERABLE)
        size = paging.page_size(request.page_size)
        bound = paging.fingerprint("organizations", request.filter, request.show_closed)
        after = paging.decode_token(request.page_token, bound)
        async with self._sessions.begin() as session:
            rows, next_key = await organization_store.list_page(
                session, conditions=conditions, show_closed=request.show_closed, after=after, limit=size
            )
            counts = await organization_store.member_counts(session, [r.id for r in rows])
        return pb.ListOrganizationsResponse(
            organizations=[convert.organization(r, counts[r.id]) for r in rows],
            next_page_token=paging.encode_token(next_key, bound) if next_key else "",
        )

    async def UpdateOrganization(
        self, request: pb.UpdateOrganizationRequest, context: Context
    ) -> pb.UpdateOrganizationResponse:
        """Change an organisation's fields named in the update mask."""
        principal = current()
        message = request.organization
        organization_id = common.parse_name(message.name, "organizations", "organization.name")
        populated = {field.name for field, _ in message.ListFields()}
        fields = rules.update_fields(
            list(request.update_mask.paths), populated, platform_admin=principal.is_platform_admin
        )
        async with self._sessions.begin() as session:
            row = await self._organization(session, principal, organization_id)
            rules.ensure_writable(OrganizationState(row.state), platform_admin=principal.is_platform_admin)
            common.check_etag(message.etag, common.organization_name(row.id), row.version)
            if _apply(row, message, fields):
                row.version += 1
                row.update_time = self._now()
                row.last_modifier = principal.subject
                await session.flush()
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
        if not principal.is_platform_admin:
            raise PermissionDenied(f"only platform operators {action.value} organizations")
        organization_id = common.parse_name(name, "organizations")
        info = RequestInfo.of(context)
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
                now = self._now()
                row.state = target.value
                row.state_reason = reason
                row.suspend_time = now if target is OrganizationState.SUSPENDED else None
                row.close_time = now if target is OrganizationState.CLOSED else None
                row.version += 1
                row.update_time = now
                row.last_modifier = principal.subject
                if target is OrganizationState.CLOSED:
                    required = await self._revoke_everyone(session, row.id, now)
                await self._audit(
                    session,
                    principal,
                    info,
                    row.id,
                    _TRANSITION_ACTIONS[action],
                    common.organization_name(row.id),
                    now,
                    "",
                    {"reason": reason} if reason else None,
                )
            counts = await organization_store.member_counts(session, [row.id])
        await self._identity.deliver(
            row.id,
            required=required,
            failure="the organization is closed, but identity could not be reached to revoke its members' tokens; "
            "retry the request",
        )
        return convert.organization(row, counts[row.id])

    @staticmethod
    async def _revoke_everyone(session: AsyncSession, organization_id: str, now: datetime.datetime) -> list[str]:
        """Queue the revocation of every member's tokens and sessions in the organisation."""
        calls = []
        for user in await member_store.users(session, organization_id):
            calls.append(
                await outbox.enqueue(
                    session,
                    organization_id=organization_id,
                    target=common.organization_name(organization_id),
                    kind=outbox.REVOKE,
                    payload=revocation(user, organization_id, reason="organization_closed", end_sessions=True),
                    now=now,
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
        request_id = common.request_id(request.request_id)
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
        organization_id = common.client_chosen_id(request.organization_id, "organization_id") or common.new_id("org")
        parent = request.parent_organization_id
        info = RequestInfo.of(context)
        async with self._sessions.begin() as session:
            existing = await organization_store.get_by_request_id(session, request_id) if request_id else None
            if existing is not None:
                membership = await member_store.find_by_user(session, existing.id, admin_user)
                if membership is None or (request.organization_id and request.organization_id != existing.id):
                    raise InvalidArgument(
                        "request_id was already used for another request",
                        {"request_id": "a new UUID4 for every logical request"},
                    )
                counts = await organization_store.member_counts(session, [existing.id])
                key = member_store.key(membership)
                teams = await member_store.teams_of(session, [key])
                return pb.ProvisionOrganizationResponse(
                    organization=convert.organization(existing, counts[existing.id]),
                    membership=convert.membership(membership, teams[key], self._now()),
                )
            if parent and await organization_store.get(session, parent) is None:
                raise InvalidArgument(
                    "unknown parent organization", {"parent_organization_id": "an existing organization"}
                )
            now = self._now()
            row = Organization(
                id=organization_id,
                display_name=display_name,
                state=OrganizationState.ACTIVE.value,
                state_reason="",
                parent_organization_id=parent,
                kyc_verified=False,
                request_id=request_id or None,
                member_epoch=0,
                create_time=now,
                update_time=now,
                creator=principal.subject,
                last_modifier=principal.subject,
                version=1,
                **values,
            )
            await organization_store.add(session, row)
            membership = Membership(
                id=common.new_id("mem"),
                organization_id=row.id,
                user=admin_user,
                email=admin_email,
                display_name=admin_name,
                role=int(Role.ADMIN),
                expire_time=None,
                invitation_id="",
                join_time=now,
                create_time=now,
                update_time=now,
                creator=principal.subject,
                last_modifier=principal.subject,
                version=1,
            )
            await member_store.add(session, membership)
            # Identity is the caller (inside its sign-up): the event waits for the next
            # delivery in this organisation rather than calling identity back now.
            await self._audit(
                session,
                principal,
                info,
                row.id,
                audit_event_pb2.AUDIT_ACTION_ORGANIZATION_CREATED,
                common.organization_name(row.id),
                now,
                "",
                {"admin_user": admin_user},
            )
        return pb.ProvisionOrganizationResponse(
            organization=convert.organization(row, 1), membership=convert.membership(membership, [], now)
        )


def _user_name(value: str, field: str) -> str:
    """A ``users/{id}`` name, as given."""
    common.parse_name(value, "users", field)
    return value
