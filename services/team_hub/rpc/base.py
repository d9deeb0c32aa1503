"""What every group of team hub's RPCs shares: sessions, the clock, identity, the caller."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import AccessTable, default_access_table
from mesh.errors import FailedPrecondition, NotFound
from mesh.principal import Principal, PrincipalKind
from runtime.handlers import ServiceContext
from services.team_hub.domain import invitations, roles
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
    def _home(principal: Principal) -> str:
        """The organisation a call acts in (the credential's).

        Raises:
            FailedPrecondition: the credential is not for an organisation (a platform
                operator or a service outside any).

        """
        if not principal.organization_id:
            raise FailedPrecondition("this call works in one organisation: use a token issued for it")
        return principal.organization_id

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
