"""DeveloperApiService: proto in, proto out. Rules live in ``domain``, queries in ``store``.

Tenancy: names carry their organisation (``organizations/{organization}/api_keys/{id}``).
A caller reaches its own organisation's keys; SUPER_ADMIN and services reach every
organisation's. A key of another organisation answers NOT_FOUND, exactly like a key that
does not exist; a list of another organisation is PERMISSION_DENIED, looked up nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import grpc

from mesh.access import AccessTable, default_access_table
from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied, ResourceExhausted, Unauthenticated
from mesh.principal import Principal, current
from services.developer_api import convert, credentials, domain, store
from services.developer_api.identity import Identity, RequestInfo
from services.developer_api.key_lists import list_api_keys
from services.developer_api.models import ApiKeyRow, utc_or_none
from services.developer_api.restrictions import parse_client_address, restriction_failure
from services.developer_api.updates import planned_update
from services.developer_api.usage_servicer import UsageRpcs
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb
from vocelio.developer_api.v1 import developer_api_service_pb2_grpc as pb_grpc
from vocelio.identity.v1 import audit_event_pb2

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
INVALID_KEY = "invalid API key"
# Idempotency is scoped per organisation and method (AIP-155).
_CREATE = "CreateApiKey"
_ROTATE = "RotateApiKey"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _request_info(context: Context) -> RequestInfo:
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    return RequestInfo.from_metadata(metadata, str(context.peer() or ""))


def _fingerprint(principal: Principal, request: Any) -> str:
    """What an idempotent request asked for, by whom (request_id excluded)."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    body = copy.SerializeToString(deterministic=True)
    return hashlib.sha256(principal.subject.encode() + b"\0" + body).hexdigest()


class DeveloperApiServicer(UsageRpcs, pb_grpc.DeveloperApiServiceServicer):
    """The API key lifecycle, verification and usage."""

    def __init__(
        self,
        sessions: Any,
        identity: Identity,
        secret_box: credentials.SecretBox,
        *,
        table: AccessTable | None = None,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        super().__init__(sessions, clock)
        self._identity = identity
        self._box = secret_box
        self._table = table or default_access_table()
        # Scopes a key may hold: the API's permissions, minus those only mesh services use.
        self._grantable = self._table.all_permissions - self._table.internal_only

    def _held(self, principal: Principal) -> frozenset[str]:
        return domain.held_permissions(principal.permissions, principal.role, self._table)

    async def _replay(
        self,
        session: Any,
        organization_id: str,
        method: str,
        request_id: str,
        fingerprint: str,
        now: datetime.datetime,
    ) -> tuple[ApiKeyRow, str] | None:
        """The key and secret of an earlier request with this id, if there was one."""
        if not request_id:
            return None
        earlier = await store.find_request(session, organization_id, method, request_id, now)
        if earlier is None:
            return None
        if earlier.fingerprint != fingerprint:
            raise InvalidArgument(
                "request_id was already used for a different request", {"request_id": "use a new request_id"}
            )
        row = await store.get_key(session, organization_id, earlier.api_key_id)
        secret = self._box.open(earlier.sealed_secret, domain.key_name(row.organization_id, row.id))
        if secret is None:
            raise FailedPrecondition("the secret of that request can no longer be shown; use a new request_id")
        return row, secret

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Context) -> pb.CreateApiKeyResponse:
        """Create a key and show its secret once."""
        principal, now, info = current(), self._clock(), _request_info(context)
        organization_id = domain.parse_parent(request.parent, wildcard=False)
        if not principal.can_access(organization_id):
            raise PermissionDenied("you may create API keys only in your own organisation")
        request_id = domain.validate_request_id(request.request_id)
        fingerprint = _fingerprint(principal, request)
        async with self._sessions.begin() as session:
            await store.wipe_expired_requests(session, now)
            replay = await self._replay(session, organization_id, _CREATE, request_id, fingerprint, now)
            if replay is not None:
                return pb.CreateApiKeyResponse(api_key=convert.key_to_proto(replay[0], now), secret=replay[1])
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
            )
            key_id = domain.validate_key_id(request.api_key_id)
            if await store.count_active(session, organization_id, now) >= domain.MAX_ACTIVE_KEYS_PER_ORGANIZATION:
                raise ResourceExhausted(
                    f"an organisation may have at most {domain.MAX_ACTIVE_KEYS_PER_ORGANIZATION} active API keys"
                )
            row, secret = await self._new_key(
                session, _CREATE, request_id, fingerprint, key_id, organization_id, settings, principal, now
            )
            name = domain.key_name(organization_id, row.id)
            await self._identity.record(
                action=audit_event_pb2.AUDIT_ACTION_API_KEY_CREATED,
                actor=principal,
                organization_id=organization_id,
                target=name,
                event_key=f"api_key_created:{name}",
                event_time=now,
                details={
                    "scopes": " ".join(settings.scopes),
                    "environment": settings.environment.value,
                    "key_type": settings.key_type.value,
                    "prefix": row.prefix,
                },
                request=info,
            )
            return pb.CreateApiKeyResponse(api_key=convert.key_to_proto(row, now), secret=secret)

    async def _new_key(
        self,
        session: Any,
        method: str,
        request_id: str,
        fingerprint: str,
        key_id: str,
        organization_id: str,
        settings: domain.KeySettings,
        principal: Principal,
        now: datetime.datetime,
        *,
        creator_role: str | None = None,
        rotated_from: str = "",
    ) -> tuple[ApiKeyRow, str]:
        secret = credentials.new_secret(settings.environment)
        if request_id:
            await store.claim_request(
                session,
                organization_id=organization_id,
                method=method,
                request_id=request_id,
                fingerprint=fingerprint,
                api_key_id=key_id,
                sealed_secret=self._box.seal(secret, domain.key_name(organization_id, key_id)),
                expire_time=now + domain.IDEMPOTENCY_WINDOW,
            )
        row = await store.insert_key(
            session,
            key_id=key_id,
            organization_id=organization_id,
            settings=settings,
            secret_hash=credentials.secret_hash(secret),
            prefix=credentials.visible_prefix(secret),
            creator=principal.subject,
            creator_role=principal.role if creator_role is None else creator_role,
            now=now,
            rotated_from=rotated_from,
        )
        return row, secret

    async def GetApiKey(self, request: pb.GetApiKeyRequest, context: Context) -> pb.GetApiKeyResponse:
        """One key of the caller's organisation."""
        organization_id, key_id = domain.parse_key_name(request.name)
        domain.readable_organization(current(), organization_id, request.name)
        async with self._sessions.begin() as session:
            row = await store.get_key(session, organization_id, key_id)
            return pb.GetApiKeyResponse(api_key=convert.key_to_proto(row, self._clock()))

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        """The organisation's keys, newest first."""
        scope = domain.list_scope(current(), domain.parse_parent(request.parent), "API keys")
        async with self._sessions.begin() as session:
            rows, next_token = await list_api_keys(session, scope, request, self._clock())
        now = self._clock()
        return pb.ListApiKeysResponse(api_keys=[convert.key_to_proto(r, now) for r in rows], next_page_token=next_token)

    async def UpdateApiKey(self, request: pb.UpdateApiKeyRequest, context: Context) -> pb.UpdateApiKeyResponse:
        """Rename, relabel, restrict, narrow or shorten an ACTIVE key."""
        principal, now, info = current(), self._clock(), _request_info(context)
        organization_id, key_id = domain.parse_key_name(request.api_key.name, "api_key.name")
        domain.readable_organization(principal, organization_id, request.api_key.name)
        async with self._sessions.begin() as session:
            row = await store.get_key(session, organization_id, key_id, for_update=True)
            changes = planned_update(row, request, now, self._grantable)
            if not changes:
                return pb.UpdateApiKeyResponse(api_key=convert.key_to_proto(row, now))
            for column, value in changes.items():
                setattr(row, column, value)
            store.bump(row, principal.subject, now)
            await session.flush()
            await self._identity.record(
                action=audit_event_pb2.AUDIT_ACTION_API_KEY_UPDATED,
                actor=principal,
                organization_id=row.organization_id,
                target=request.api_key.name,
                event_key=f"api_key_updated:{request.api_key.name}:{row.version}",
                event_time=now,
                details={"fields": ",".join(sorted(changes)), "scopes": " ".join(convert.scopes_of(row))},
                request=info,
            )
            return pb.UpdateApiKeyResponse(api_key=convert.key_to_proto(row, now))

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.RevokeApiKeyResponse:
        """Revoke a key, then have identity revoke its tokens and log the event (idempotent)."""
        principal, now, info = current(), self._clock(), _request_info(context)
        organization_id, key_id = domain.parse_key_name(request.name)
        domain.readable_organization(principal, organization_id, request.name)
        reason = domain.validate_revoke_reason(request.reason)
        async with self._sessions.begin() as session:
            row = await store.get_key(session, organization_id, key_id, for_update=True)
            state = convert.state_of(row, now)
            if state is domain.KeyState.EXPIRED:
                raise FailedPrecondition("the key has already expired and no longer works")
            if state is domain.KeyState.ACTIVE:
                row.state = domain.KeyState.REVOKED.value
                row.revoke_time = now
                row.revoke_reason = reason
                store.bump(row, principal.subject, now)
        # Committed: the key no longer verifies. Identity's part is idempotent, so a retry
        # of this call after a failure below completes it.
        name = request.name
        await self._identity.revoke_tokens(name, row.organization_id)
        await self._identity.record(
            action=audit_event_pb2.AUDIT_ACTION_API_KEY_REVOKED,
            actor=principal,
            organization_id=row.organization_id,
            target=name,
            event_key=f"api_key_revoked:{name}",
            event_time=utc_or_none(row.revoke_time) or now,
            details={"reason": row.revoke_reason[:200], "prefix": row.prefix},
            request=info,
        )
        return pb.RevokeApiKeyResponse(api_key=convert.key_to_proto(row, now))

    async def RotateApiKey(self, request: pb.RotateApiKeyRequest, context: Context) -> pb.RotateApiKeyResponse:
        """Replace a key with a new secret; the old one works for the overlap, then expires."""
        principal, now, info = current(), self._clock(), _request_info(context)
        organization_id, key_id = domain.parse_key_name(request.name)
        domain.readable_organization(principal, organization_id, request.name)
        request_id = domain.validate_request_id(request.request_id)
        fingerprint = _fingerprint(principal, request)
        async with self._sessions.begin() as session:
            await store.wipe_expired_requests(session, now)
            old = await store.get_key(session, organization_id, key_id, for_update=True)
            replay = await self._replay(session, organization_id, _ROTATE, request_id, fingerprint, now)
            if replay is not None:
                new, secret = replay
                previous = await store.get_key(session, organization_id, new.rotated_from)
                return pb.RotateApiKeyResponse(
                    api_key=convert.key_to_proto(new, now),
                    secret=secret,
                    previous_api_key=convert.key_to_proto(previous, now),
                )
            domain.require_rotatable(convert.state_of(old, now), old.rotated_to)
            domain.check_creator_holds(convert.scopes_of(old), self._held(principal))
            old_expiry = domain.rotation_expiry(utc_or_none(old.expire_time), convert.span(request, "overlap"), now)
            new_expiry = domain.validate_new_expiry(convert.moment(request, "new_expire_time"), now, "new_expire_time")
            settings = dataclasses.replace(convert.settings_of(old), expire_time=new_expiry)
            new, secret = await self._new_key(
                session,
                _ROTATE,
                request_id,
                fingerprint,
                domain.new_key_id(),
                old.organization_id,
                settings,
                principal,
                now,
                creator_role=old.creator_role,
                rotated_from=old.id,
            )
            old.expire_time = old_expiry
            old.rotated_to = new.id
            store.bump(old, principal.subject, now)
            await session.flush()
            await self._identity.record(
                action=audit_event_pb2.AUDIT_ACTION_API_KEY_ROTATED,
                actor=principal,
                organization_id=old.organization_id,
                target=request.name,
                event_key=f"api_key_rotated:{request.name}",
                event_time=now,
                details={
                    "successor": domain.key_name(organization_id, new.id),
                    "overlap": f"{int((old_expiry - now).total_seconds())}s",
                    "prefix": new.prefix,
                },
                request=info,
            )
            return pb.RotateApiKeyResponse(
                api_key=convert.key_to_proto(new, now),
                secret=secret,
                previous_api_key=convert.key_to_proto(old, now),
            )

    async def VerifyApiKey(self, request: pb.VerifyApiKeyRequest, context: Context) -> pb.VerifyApiKeyResponse:
        """The principal a secret stands for; one UNAUTHENTICATED answer for every failure."""
        now = self._clock()
        if not credentials.looks_like_secret(request.secret):
            log.info("API key refused: not shaped like a key")
            raise Unauthenticated(INVALID_KEY)
        digest = credentials.secret_hash(request.secret)
        async with self._sessions.begin() as session:
            row = await store.find_by_hash(session, digest)
            if row is None or not credentials.hashes_match(row.secret_hash, digest):
                log.info("API key refused: no key has this secret (%s…)", request.secret[:8])
                raise Unauthenticated(INVALID_KEY)
            state = convert.state_of(row, now)
            restrictions = convert.restrictions_of(row)
            failure = (
                f"the key is {state.value}"
                if state is not domain.KeyState.ACTIVE
                else restriction_failure(restrictions, client_address=request.client_address, origin=request.origin)
            )
            if failure is not None:
                log.info("API key %s refused: %s", domain.key_name(row.organization_id, row.id), failure)
                raise Unauthenticated(INVALID_KEY)
            if domain.needs_last_used_write(utc_or_none(row.last_used_time), now):
                address = parse_client_address(request.client_address)
                await store.touch_last_used(session, row, domain.last_used_minute(now), str(address) if address else "")
        response = pb.VerifyApiKeyResponse(
            api_key=domain.key_name(row.organization_id, row.id),
            organization_id=row.organization_id,
            scopes=convert.scopes_of(row),
            environment=convert.environment_number(row.environment),  # type: ignore[arg-type]
            key_type=convert.key_type_number(row.key_type),  # type: ignore[arg-type]
            restrictions=convert.restrictions_to_proto(restrictions),
            display_name=row.display_name,
        )
        if row.expire_time is not None:
            response.expire_time.CopyFrom(convert.timestamp(row.expire_time))
        return response
