"""DeveloperApiService: proto in, proto out. Rules live in ``domain``, queries in ``store``.

Names, paging, masks, etags, tenancy, request_id, the outbox and audit are the service
kit's (:mod:`mesh.kit`). Tenancy: names carry their organisation
(``organizations/{organization}/api_keys/{id}``). A caller reaches its own organisation's
keys; SUPER_ADMIN and services read every organisation's but change only their own. A key
of another organisation answers exactly what a missing key answers
(:func:`mesh.kit.tenancy.not_found`).

Each change, its outbox event, its audit entry (and a revocation owed to identity) and its
request_id commit together; the entries owed to identity are delivered right after the
commit (:mod:`mesh.kit.audit`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any, TypeAlias

import grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import AccessTable, default_access_table
from mesh.errors import FailedPrecondition, PermissionDenied, ResourceExhausted, Unauthenticated
from mesh.kit import etags, paging, tenancy
from mesh.kit.audit import REVOKE
from mesh.kit.caller import CallerInfo
from mesh.kit.sql import timestamp
from mesh.kit.tables import IdentityCallRow
from mesh.principal import Principal, PrincipalKind, current
from mesh.restrictions import KeyRestrictions
from runtime.handlers import ServiceContext
from services.developer_api import convert, credentials, domain, events, store
from services.developer_api.members import MemberRoles, TeamHubMembers
from services.developer_api.models import ApiKeyRow
from services.developer_api.organizations import OrganizationGate
from services.developer_api.restrictions import Restrictions, parse_client_address, restriction_failure, widened
from services.developer_api.updates import Updater, planned_update
from services.developer_api.usage_servicer import UsageRpcs
from vocelio.developer_api.v1 import developer_api_events_pb2 as ev
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb
from vocelio.developer_api.v1 import developer_api_service_pb2_grpc as pb_grpc
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2

log = logging.getLogger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
INVALID_KEY = "invalid API key"
REVOKE_FAILED = "identity could not revoke the key's tokens; the key is revoked, retry to finish"


def _without_secret(response: Any) -> Any:
    """The copy of a create or rotate response the request_id store keeps and a retry gets.

    Never the secret: it is shown once, and a replay says so (``secret_withheld``).
    """
    copy = type(response)()
    copy.CopyFrom(response)
    copy.secret = ""
    copy.secret_withheld = True
    return copy


def within_creator_limits(
    settings: domain.KeySettings, limits: KeyRestrictions, *, explicit_expiry: bool
) -> domain.KeySettings:
    """A new key's settings, never wider than the restrictions of the API key that creates it.

    A restricted key must not mint itself an unrestricted sibling: every list it is bound by
    binds the new key too (it may narrow them), and the new key expires no later than it. An
    unset expiry is brought down to the creator's; a later one asked for is refused.

    Raises:
        PermissionDenied: a restriction wider than the creator's, or a later expiry.

    """
    if limits.empty:
        return settings
    creator = Restrictions(
        allowed_origins=limits.origins, allowed_ip_ranges=limits.ip_ranges, allowed_agents=limits.agents
    )
    wider = widened(creator, settings.restrictions)
    if wider:
        raise PermissionDenied(f"a key may not create a key with wider {', '.join(wider)} than its own")
    if limits.expires_at is not None and settings.expire_time is not None:
        creator_expiry = datetime.datetime.fromtimestamp(limits.expires_at, tz=datetime.UTC)
        if settings.expire_time > creator_expiry:
            if explicit_expiry:
                raise PermissionDenied("a key may not create a key that outlives it")
            settings = dataclasses.replace(settings, expire_time=creator_expiry)
    return settings


class DeveloperApiServicer(UsageRpcs, pb_grpc.DeveloperApiServiceServicer):
    """The API key lifecycle, verification and usage."""

    def __init__(
        self,
        context: ServiceContext,
        secret_box: credentials.SecretBox,
        *,
        table: AccessTable | None = None,
        members: MemberRoles | None = None,
    ) -> None:
        super().__init__(context)
        self._members = members or TeamHubMembers(context.clients)
        self._box = secret_box
        self._organizations = OrganizationGate(context.clients)
        self._table = table or default_access_table()
        # Scopes a key may hold: the API's permissions, minus those only mesh services use.
        self._grantable = self._table.all_permissions - self._table.internal_only
        # Every key expires; one created without an expiry lives this long (VOCELIO_API_KEY_MAX_LIFETIME_DAYS).
        self._max_lifetime = datetime.timedelta(days=context.settings.api_key_max_lifetime_days)

    def _held(self, principal: Principal) -> frozenset[str]:
        return domain.held_permissions(principal.permissions, principal.role, self._table)

    async def _writable(self, session: AsyncSession, name: str, principal: Principal, field: str = "name") -> ApiKeyRow:
        """The named key, locked, if the caller may change it; another organisation's is NOT_FOUND."""
        organization_id, key_id = domain.parse_key_name(name, field)
        row = await store.find_key(session, organization_id, key_id, for_update=True)
        if row is None or not tenancy.may_read(principal, organization_id):
            raise tenancy.not_found(name)
        tenancy.require_writable(principal, organization_id, name)
        return row

    async def _new_key(
        self,
        session: AsyncSession,
        *,
        key_id: str,
        organization_id: str,
        settings: domain.KeySettings,
        principal: Principal,
        creator_role: str,
        now: datetime.datetime,
        rotated_from: str = "",
        owner: str = "",
    ) -> tuple[ApiKeyRow, str]:
        secret = credentials.new_secret(settings.environment)
        row = await store.insert_key(
            session,
            key_id=key_id,
            organization_id=organization_id,
            settings=settings,
            secret_hash=credentials.secret_hash(secret),
            prefix=credentials.visible_prefix(secret),
            creator=principal.subject,
            creator_role=creator_role,
            now=now,
            rotated_from=rotated_from,
            owner=owner,
        )
        # A retry with the same request_id gets the key without this secret: nothing keeps a copy.
        return row, secret

    async def _forget_expired(self, session: AsyncSession, now: datetime.datetime) -> None:
        await store.wipe_expired_secrets(session, now)
        await self._idempotency.prune(session)

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Context) -> pb.CreateApiKeyResponse:
        """Create a key and show its secret once."""
        principal, now = current(), self._clock.now()
        parent = domain.KEYS.parse_parent(request.parent, allow_wildcard=False)
        organization_id = tenancy.write_organization(principal, parent.organization)
        async with self._sessions.begin() as session:
            await self._forget_expired(session, now)
            claim = await self._idempotency.claim(
                session,
                method="CreateApiKey",
                organization_id=organization_id,
                principal=principal.subject,
                request=request,
                response_type=pb.CreateApiKeyResponse,
            )
            if claim.replay is not None:
                return claim.replay  # the key, never its secret again (secret_withheld)
            wanted = request.api_key
            settings = domain.validate_new_key(
                display_name=wanted.display_name,
                key_type=convert.KEY_TYPES.get(wanted.key_type),
                environment=convert.ENVIRONMENTS.get(wanted.environment),
                scopes=wanted.scopes,
                restrictions=convert.restrictions_from_proto(wanted.restrictions),
                expire_time=convert.moment(wanted, "expire_time"),
                labels=dict(wanted.labels),
                held=self._held(principal),
                creator_role=principal.role,
                known=self._grantable,
                organization_id=organization_id,
                now=now,
                max_lifetime=self._max_lifetime,
            )
            settings = within_creator_limits(
                settings, principal.restrictions, explicit_expiry=wanted.HasField("expire_time")
            )
            key_id = domain.validate_key_id(request.api_key_id)
            if await store.count_active(session, organization_id, now) >= domain.MAX_ACTIVE_KEYS_PER_ORGANIZATION:
                raise ResourceExhausted(
                    f"an organisation may have at most {domain.MAX_ACTIVE_KEYS_PER_ORGANIZATION} active API keys"
                )
            row, secret = await self._new_key(
                session,
                key_id=key_id,
                organization_id=organization_id,
                settings=settings,
                principal=principal,
                creator_role=principal.role,
                now=now,
            )
            key = convert.key_to_proto(row, now)
            await events.record(self._outbox, session, key.name, ev.ApiKeyCreatedEvent(api_key=key), principal)
            await self._audit.record(
                session,
                principal=principal,
                caller=CallerInfo.of(context),
                organization_id=organization_id,
                action=audit_event_pb2.AUDIT_ACTION_API_KEY_CREATED,
                target=key.name,
                details={
                    "scopes": " ".join(settings.scopes),
                    "environment": settings.environment.value,
                    "key_type": settings.key_type.value,
                    "prefix": row.prefix,
                },
            )
            response = pb.CreateApiKeyResponse(api_key=key, secret=secret)
            await claim.complete(session, response, redact=_without_secret)
        await self._audit.deliver(organization_id)
        return response

    async def GetApiKey(self, request: pb.GetApiKeyRequest, context: Context) -> pb.GetApiKeyResponse:
        """One key the caller may read."""
        organization_id, key_id = domain.parse_key_name(request.name)
        async with self._sessions.begin() as session:
            row = await store.find_key(session, organization_id, key_id)
            if row is None or not tenancy.may_read(current(), organization_id):
                raise tenancy.not_found(request.name)
            return pb.GetApiKeyResponse(api_key=convert.key_to_proto(row, self._clock.now()))

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        """The organisation's keys (every organisation's for ``organizations/-``), newest first."""
        parent = domain.KEYS.parse_parent(request.parent)
        scope = tenancy.list_scope(current(), parent.organization)
        size = paging.page_size(request.page_size, default=50, maximum=100)
        binding = paging.query_binding(request, scope.binding())
        after = self._page_tokens.decode_optional(request.page_token, binding)
        now = self._clock.now()
        async with self._sessions.begin() as session:
            page = await store.list_keys(
                session,
                scope.organization_id,
                request.filter,
                show_inactive=request.show_inactive,
                now=now,
                after=after,
                limit=size,
            )
            keys = [convert.key_to_proto(row, now) for row in page.items]
        token = self._page_tokens.encode(page.next_after, binding) if page.next_after else ""
        return pb.ListApiKeysResponse(api_keys=keys, next_page_token=token)

    async def UpdateApiKey(self, request: pb.UpdateApiKeyRequest, context: Context) -> pb.UpdateApiKeyResponse:
        """Rename, relabel, restrict, narrow or shorten an ACTIVE key."""
        principal, now, name = current(), self._clock.now(), request.api_key.name
        domain.parse_key_name(name, "api_key.name")
        async with self._sessions.begin() as session:
            row = await self._writable(session, name, principal, "api_key.name")
            updater = Updater(held=self._held(principal), is_api_key=principal.kind is PrincipalKind.API_KEY)
            changes = planned_update(
                row, request, now, self._grantable, updater=updater, max_lifetime=self._max_lifetime
            )
            if not changes:
                return pb.UpdateApiKeyResponse(api_key=convert.key_to_proto(row, now))
            for column, value in changes.items():
                setattr(row, column, value)
            row.stamp_changed(principal.subject, now)
            await store.save_key(session)
            key = convert.key_to_proto(row, now)
            changed = sorted(changes)
            await events.record(
                self._outbox, session, name, ev.ApiKeyUpdatedEvent(api_key=key, changed=changed), principal
            )
            await self._audit.record(
                session,
                principal=principal,
                caller=CallerInfo.of(context),
                organization_id=row.organization_id,
                action=audit_event_pb2.AUDIT_ACTION_API_KEY_UPDATED,
                target=name,
                details={"fields": ",".join(changed), "scopes": " ".join(convert.scopes_of(row))},
            )
        await self._audit.deliver(row.organization_id)
        return pb.UpdateApiKeyResponse(api_key=key)

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.RevokeApiKeyResponse:
        """Revoke a key, then have identity revoke its tokens (idempotent: a retry finishes that part)."""
        principal, now, name = current(), self._clock.now(), request.name
        domain.parse_key_name(name)
        reason = domain.validate_revoke_reason(request.reason)
        async with self._sessions.begin() as session:
            row = await self._writable(session, name, principal)
            state = convert.state_of(row, now)
            if state is domain.KeyState.EXPIRED:
                raise FailedPrecondition("the key has already expired and no longer works")
            if state is domain.KeyState.ACTIVE:
                await self._revoke(session, row, principal, CallerInfo.of(context), reason, now)
            key = convert.key_to_proto(row, now)
            # The revocation owed to identity, whether queued now or by an earlier attempt.
            owed = list(
                await session.scalars(
                    select(IdentityCallRow.id).where(
                        IdentityCallRow.organization_id == row.organization_id,
                        IdentityCallRow.target == name,
                        IdentityCallRow.kind == REVOKE,
                        IdentityCallRow.done_time.is_(None),
                    )
                )
            )
        # Committed: the key no longer verifies. Its tokens must die too before we answer OK.
        await self._identity_calls.deliver(row.organization_id, required=owed, failure=REVOKE_FAILED)
        return pb.RevokeApiKeyResponse(api_key=key)

    async def _revoke(
        self,
        session: AsyncSession,
        row: ApiKeyRow,
        principal: Principal,
        caller: CallerInfo,
        reason: str,
        now: datetime.datetime,
    ) -> None:
        """Revoke an ACTIVE key: its state, event, audit entry and the token revocation owed to identity."""
        name = domain.key_name(row.organization_id, row.id)
        previous = convert.state_of(row, now)
        row.state = domain.KeyState.REVOKED.value
        row.revoke_time = now
        row.revoke_reason = reason
        row.stamp_changed(principal.subject, now)
        await store.save_key(session)
        key = convert.key_to_proto(row, now)
        await events.record(
            self._outbox,
            session,
            name,
            ev.ApiKeyRevokedEvent(api_key=key, previous_state=convert.STATES[previous]),
            principal,
        )
        await self._audit.record(
            session,
            principal=principal,
            caller=caller,
            organization_id=row.organization_id,
            action=audit_event_pb2.AUDIT_ACTION_API_KEY_REVOKED,
            target=name,
            details={"reason": row.revoke_reason[:200], "prefix": row.prefix},
        )
        revocation = identity_service_pb2.RevokePrincipalTokensRequest(
            principal=name, organization_id=row.organization_id, reason="api_key_revoked"
        )
        await self._identity_calls.enqueue(
            session, organization_id=row.organization_id, target=name, kind=REVOKE, request=revocation
        )

    async def TransferApiKey(self, request: pb.TransferApiKeyRequest, context: Context) -> pb.TransferApiKeyResponse:
        """Hand a key to another active member who holds its scopes; it then outlives its old owner."""
        principal, name = current(), request.name
        organization_id, _ = domain.parse_key_name(name)
        new_owner = domain.validate_owner(request.new_owner, "new_owner")
        async with self._sessions.begin() as session:
            row = await self._writable(session, name, principal)
            domain.require_active(convert.state_of(row, self._clock.now()), "transferred")
            scopes = convert.scopes_of(row)
        # The caller may hand over only what they hold, and the new owner must hold it too.
        domain.check_creator_holds(scopes, self._held(principal))
        role = await self._members.role_in(new_owner, organization_id)
        if role is None:
            raise FailedPrecondition(f"{new_owner} is not an active member of the organisation")
        owner_holds = self._table.permissions(role)
        beyond = [] if "*" in owner_holds else [s for s in scopes if s not in owner_holds]
        if beyond:
            raise PermissionDenied(f"the new owner does not hold the key's permissions: {', '.join(beyond)}")
        now = self._clock.now()
        async with self._sessions.begin() as session:
            row = await self._writable(session, name, principal)
            domain.require_active(convert.state_of(row, now), "transferred")
            etags.check_etag(request.etag, convert.etag(row), what="the API key")
            previous = row.owner or row.creator
            if previous == new_owner:
                return pb.TransferApiKeyResponse(api_key=convert.key_to_proto(row, now))
            row.owner = new_owner
            row.stamp_changed(principal.subject, now)
            await store.save_key(session)
            key = convert.key_to_proto(row, now)
            await events.record(
                self._outbox, session, name, ev.ApiKeyUpdatedEvent(api_key=key, changed=["owner"]), principal
            )
            await self._audit.record(
                session,
                principal=principal,
                caller=CallerInfo.of(context),
                organization_id=organization_id,
                action=audit_event_pb2.AUDIT_ACTION_API_KEY_UPDATED,
                target=name,
                details={"fields": "owner", "previous_owner": previous, "owner": new_owner},
            )
        await self._audit.deliver(organization_id)
        return pb.TransferApiKeyResponse(api_key=key)

    async def RevokeOwnerApiKeys(
        self, request: pb.RevokeOwnerApiKeysRequest, context: Context
    ) -> pb.RevokeOwnerApiKeysResponse:
        """Revoke every ACTIVE key a removed member owns in the organisation (team_hub, on RemoveMember)."""
        principal, now = current(), self._clock.now()
        organization_id = domain.validate_organization_id(request.organization_id)
        owner = domain.validate_owner(request.owner, "owner")
        reason = domain.validate_revoke_reason(request.reason or "owner_removed")
        async with self._sessions.begin() as session:
            rows = await store.active_keys_of_owner(session, organization_id, owner, now)
            caller = CallerInfo.of(context)
            for row in rows:
                await self._revoke(session, row, principal, caller, reason, now)
            revoked = [domain.key_name(row.organization_id, row.id) for row in rows]
            # Token revocations owed to identity, queued now or by an attempt that could not deliver them.
            owed = list(
                await session.scalars(
                    select(IdentityCallRow.id).where(
                        IdentityCallRow.organization_id == organization_id,
                        IdentityCallRow.kind == REVOKE,
                        IdentityCallRow.done_time.is_(None),
                    )
                )
            )
        await self._identity_calls.deliver(organization_id, required=owed, failure=REVOKE_FAILED)
        return pb.RevokeOwnerApiKeysResponse(revoked_api_keys=revoked)

    async def RotateApiKey(self, request: pb.RotateApiKeyRequest, context: Context) -> pb.RotateApiKeyResponse:
        """Replace a key with a new secret; the old one works for the overlap, then expires."""
        principal, now, name = current(), self._clock.now(), request.name
        organization_id, _ = domain.parse_key_name(name)
        async with self._sessions.begin() as session:
            await self._forget_expired(session, now)
            old = await self._writable(session, name, principal)
            claim = await self._idempotency.claim(
                session,
                method="RotateApiKey",
                organization_id=organization_id,
                principal=principal.subject,
                request=request,
                response_type=pb.RotateApiKeyResponse,
            )
            if claim.replay is not None:
                return claim.replay  # the key, never its secret again (secret_withheld)
            domain.require_rotatable(convert.state_of(old, now), old.rotated_to)
            domain.check_creator_holds(convert.scopes_of(old), self._held(principal))
            old_expiry = domain.rotation_expiry(old.expire_time, convert.span(request, "overlap"), now)
            new_expiry = domain.validate_new_expiry(
                convert.moment(request, "new_expire_time"), now, "new_expire_time", max_lifetime=self._max_lifetime
            )
            settings = dataclasses.replace(convert.settings_of(old), expire_time=new_expiry)
            new, secret = await self._new_key(
                session,
                key_id=domain.new_key_id(),
                organization_id=organization_id,
                settings=settings,
                principal=principal,
                creator_role=old.creator_role,
                now=now,
                rotated_from=old.id,
                owner=old.owner or old.creator,
            )
            old.expire_time = old_expiry
            old.rotated_to = new.id
            old.stamp_changed(principal.subject, now)
            await store.save_key(session)
            response = pb.RotateApiKeyResponse(
                api_key=convert.key_to_proto(new, now),
                secret=secret,
                previous_api_key=convert.key_to_proto(old, now),
            )
            await events.record(
                self._outbox, session, name, ev.ApiKeyRotatedEvent(api_key=response.previous_api_key), principal
            )
            await events.record(
                self._outbox, session, response.api_key.name, ev.ApiKeyCreatedEvent(api_key=response.api_key), principal
            )
            await self._audit.record(
                session,
                principal=principal,
                caller=CallerInfo.of(context),
                organization_id=organization_id,
                action=audit_event_pb2.AUDIT_ACTION_API_KEY_ROTATED,
                target=name,
                details={
                    "successor": response.api_key.name,
                    "overlap": f"{int((old_expiry - now).total_seconds())}s",
                    "prefix": new.prefix,
                },
            )
            await claim.complete(session, response, redact=_without_secret)
        await self._audit.deliver(organization_id)
        return response

    async def VerifyApiKey(self, request: pb.VerifyApiKeyRequest, context: Context) -> pb.VerifyApiKeyResponse:
        """The principal a secret stands for; one UNAUTHENTICATED answer for every failure."""
        now = self._clock.now()
        if not credentials.looks_like_secret(request.secret):
            log.info("API key refused: not shaped like a key")
            raise Unauthenticated(INVALID_KEY)
        digest = credentials.secret_hash(request.secret)
        async with self._sessions.begin() as session:
            row = await store.find_by_hash(session, digest)
            if row is None or not credentials.hashes_match(row.secret_hash, digest):
                log.info("API key refused: no key has this secret (%s…)", request.secret[:8])
                raise Unauthenticated(INVALID_KEY)
            name = domain.key_name(row.organization_id, row.id)
            state = convert.state_of(row, now)
            restrictions = convert.restrictions_of(row)
            failure = (
                f"the key is {state.value}"
                if state is not domain.KeyState.ACTIVE
                else restriction_failure(restrictions, client_address=request.client_address, origin=request.origin)
            )
            if failure is not None:
                log.info("API key %s refused: %s", name, failure)
                raise Unauthenticated(INVALID_KEY)
        # Outside the transaction: fail closed on the organisation's state (UNAVAILABLE if team_hub is away).
        if not await self._organizations.is_active(row.organization_id):
            log.info("API key %s refused: its organisation is not active", name)
            raise Unauthenticated(INVALID_KEY)
        if domain.needs_last_used_write(row.last_used_time, now):
            address = parse_client_address(request.client_address)
            async with self._sessions.begin() as session:
                await store.touch_last_used(session, row, domain.last_used_minute(now), str(address) if address else "")
        response = pb.VerifyApiKeyResponse(
            api_key=name,
            organization_id=row.organization_id,
            scopes=convert.scopes_of(row),
            environment=convert.environment_number(row.environment),  # type: ignore[arg-type]
            key_type=convert.key_type_number(row.key_type),  # type: ignore[arg-type]
            restrictions=convert.restrictions_to_proto(restrictions),
            display_name=row.display_name,
        )
        if row.expire_time is not None:
            response.expire_time.CopyFrom(timestamp(row.expire_time))
        return response
