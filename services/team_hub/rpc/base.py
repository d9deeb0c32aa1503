"""What every group of team hub's RPCs shares: sessions, the clock, identity, the caller."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import AccessTable, default_access_table
from mesh.errors import InvalidArgument, NotFound, PermissionDenied
from mesh.principal import Principal, PrincipalKind
from runtime.handlers import ServiceContext
from services.team_hub.domain import common, invitations, roles
from services.team_hub.identity import IdentityLink, RequestInfo, audit_event
from services.team_hub.models import Organization
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from services.team_hub.store import outbox
from vocelio.identity.v1 import audit_event_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def utc_now() -> datetime.datetime:
    """The current time, aware, in UTC."""
    return datetime.datetime.now(datetime.UTC)


class RpcBase:
    """Dependencies and helpers of the servicer."""

    def __init__(self, context: ServiceContext, *, clock: Callable[[], datetime.datetime] = utc_now) -> None:
        self._sessions = context.database.sessions
        self._now = clock
        self._identity = IdentityLink(context.clients, self._sessions, clock)
        self._token_key = invitations.token_key(context.settings.mesh_key_encryption_key())
        self._table: AccessTable = default_access_table()

    @staticmethod
    def _parent(principal: Principal, parent: str, field: str = "parent") -> str:
        """The organisation a List or Create acts in, from its ``parent``.

        Raises:
            InvalidArgument: not ``organizations/{organization}``, or ``organizations/-``
                from a platform principal (team hub's lists do not span organisations).
            PermissionDenied: the caller is not in that organisation: one answer whether
                or not it exists, ``organizations/-`` included.

        """
        organization_id = common.parse_parent(parent, field)
        if organization_id == common.EVERY_ORGANIZATION and principal.is_platform_admin:
            raise InvalidArgument(f"{field}: this list does not span organizations", {field: "name one organization"})
        if organization_id == common.EVERY_ORGANIZATION or not principal.can_access(organization_id):
            raise PermissionDenied(f"{field}: you have no access to that organization; name your own")
        return organization_id

    @staticmethod
    def _child(
        principal: Principal, name: str, collection: str, not_found: str, field: str = "name"
    ) -> tuple[str, str]:
        """The organisation and id of a resource name the caller may look up.

        Raises:
            InvalidArgument: not ``organizations/{organization}/{collection}/{id}``.
            NotFound: the name is in another organisation (``not_found``, exactly what a
                missing resource answers).

        """
        organization_id, resource_id = common.parse_child(name, collection, field)
        if not principal.can_access(organization_id):
            raise NotFound(not_found)
        return organization_id, resource_id

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
        if not principal.can_access(organization_id):
            raise NotFound("organization not found")
        found = await (organization_store.lock if lock else organization_store.get)(session, organization_id)
        if found is None:
            raise NotFound("organization not found")
        return found

    @staticmethod
    async def _actor_label(session: AsyncSession, principal: Principal, organization_id: str) -> str:
        """The acting user's e-mail address in the organisation, for the audit log."""
        if principal.kind is not PrincipalKind.USER:
            return ""
        membership = await member_store.find_by_user(session, organization_id, principal.subject)
        return membership.email if membership is not None else ""

    @staticmethod
    async def _audit(
        session: AsyncSession,
        principal: Principal,
        info: RequestInfo,
        organization_id: str,
        action: audit_event_pb2.AuditAction,
        target: str,
        now: datetime.datetime,
        label: str,
        details: dict[str, str] | None = None,
    ) -> None:
        """Queue an audit event in the transaction of the change it records."""
        await outbox.enqueue(
            session,
            organization_id=organization_id,
            target=target,
            kind=outbox.AUDIT,
            payload=audit_event(
                principal,
                info,
                organization_id=organization_id,
                action=action,
                target=target,
                now=now,
                actor_label=label,
                details=details,
            ),
            now=now,
        )
