"""What every group of team hub's RPCs shares: the kit's context, tenancy, the caller, the audit log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import AccessTable, default_access_table
from mesh.errors import InvalidArgument, NotFound
from mesh.kit import tenancy
from mesh.kit.caller import CallerInfo
from mesh.kit.names import ParsedName, ResourceName
from mesh.principal import Principal, PrincipalKind
from runtime.handlers import ServiceContext
from services.team_hub.developer_api import DeveloperApiLink
from services.team_hub.domain import invitations, roles
from services.team_hub.identity import IdentityLink
from services.team_hub.models import Organization
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from vocelio.identity.v1 import audit_event_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class RpcBase:
    """Dependencies and helpers of the servicer.

    Tenancy: a name under an organisation the caller may not read answers
    :func:`mesh.kit.tenancy.not_found`, exactly like a missing one; a ``parent`` the caller
    does not belong to is PERMISSION_DENIED whether or not it exists. Unlike most services,
    platform principals (SUPER_ADMIN, mesh services) also *change* organisations other than
    their own here: running tenants is what team hub is for (suspending one, provisioning
    one at sign-up, fixing a locked-out organisation's roles).
    """

    def __init__(self, context: ServiceContext) -> None:
        self._sessions = context.sessions
        self._clock = context.clock
        self._page_tokens = context.page_tokens
        self._idempotency = context.idempotency
        self._identity_calls = context.identity_calls
        self._audit_port = context.audit
        self._identity = IdentityLink(context.clients)
        self._developer_api = DeveloperApiLink(context.clients)
        self._token_key = invitations.token_key(context.settings.mesh_key_encryption_key())
        self._table: AccessTable = default_access_table()

    @staticmethod
    def _list_scope(principal: Principal, parent: str, resource: ResourceName) -> tenancy.ReadScope:
        """The organisations a List reads (``organizations/-``: every one, for platform principals).

        Raises:
            InvalidArgument: ``parent`` is not ``organizations/{organization}``.
            PermissionDenied: the caller is not in that organisation (one answer whether or not it exists).

        """
        return tenancy.list_scope(principal, resource.parse_parent(parent).organization)

    @staticmethod
    def _write_parent(principal: Principal, parent: str, resource: ResourceName) -> str:
        """The organisation a Create writes into, from its ``parent``.

        Raises:
            InvalidArgument: not ``organizations/{organization}``, or ``organizations/-``
                from a platform principal (a create names one organisation).
            PermissionDenied: the caller is not in that organisation (one answer whether or not it exists).

        """
        scope = tenancy.list_scope(principal, resource.parse_parent(parent).organization)
        if scope.organization_id is None:
            raise InvalidArgument("parent: a create names one organization", {"parent": "name one organization"})
        return scope.organization_id

    @staticmethod
    def _readable(principal: Principal, parsed: ParsedName) -> bool:
        """Whether the caller may see a resource of the named organisation."""
        return tenancy.read_scope_for_name(principal, parsed.organization) is not None

    @staticmethod
    def _actor(principal: Principal) -> roles.Actor:
        return roles.Actor(principal.subject, roles.actor_role(principal.role))

    @staticmethod
    async def _organization(
        session: AsyncSession, principal: Principal, organization_id: str, *, lock: bool = False
    ) -> Organization:
        """An organisation the caller may see (locked for the transaction if asked).

        Raises:
            NotFound: it does not exist, or belongs to another tenant.

        """
        readable = tenancy.may_read(principal, organization_id)
        if lock and not readable:
            raise NotFound("organization not found")  # never lock another tenant's row
        found = await (organization_store.lock if lock else organization_store.get)(session, organization_id)
        if found is None or not readable:
            raise NotFound("organization not found")
        return found

    @staticmethod
    async def _actor_label(session: AsyncSession, principal: Principal, organization_id: str) -> str:
        """The acting user's e-mail address in the organisation, for the audit log."""
        if principal.kind is not PrincipalKind.USER:
            return ""
        membership = await member_store.find_by_user(session, organization_id, principal.subject)
        return membership.email if membership is not None else ""

    async def _audit(
        self,
        session: AsyncSession,
        principal: Principal,
        context: Context,
        organization_id: str,
        action: audit_event_pb2.AuditAction,
        target: str,
        label: str = "",
        details: Mapping[str, str] | None = None,
    ) -> None:
        """Record an audit entry in the transaction of the change it records."""
        await self._audit_port.record(
            session,
            principal=principal,
            caller=CallerInfo.of(context),
            organization_id=organization_id,
            action=action,
            target=target,
            details=details,
            actor_label=label,
        )
