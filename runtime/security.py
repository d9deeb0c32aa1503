"""Authentication: turn the credential on a call into a :class:`Principal`.

Credentials: ``authorization: Bearer <access token>`` (a JWT from identity),
``authorization: Bearer <API key>`` or ``x-api-key: <API key>`` (``vk_…``, checked by
developer_api). Permissions: a user's come from the role table; an API key's (and a
down-scoped token's) are its scopes; a service's are its token's scopes, which identity
derives from the calls the service's contract declares. A verified token's
principal is cached (bounded, least recently used first out) until the token expires,
but revocation is checked on every call, so a revoked token fails on the very next one.
A verified API key is cached for a short while, but an organisation revocation of its
organisation (suspension, closing) forces the next call to verify it again; a signing-key
revocation empties the token cache. While the revocation list is stale (identity unheard
for too long) user and API-key credentials get UNAVAILABLE, never a pass.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import json_format

from mesh.access import AccessTable, Role
from mesh.errors import Unauthenticated, Unavailable
from mesh.jwks import JwksCache
from mesh.principal import Principal, PrincipalKind
from mesh.restrictions import NO_RESTRICTIONS, KeyRestrictions
from mesh.revocations import RevocationSet
from mesh.tokens import Claims, InvalidToken, KeySource, TokenVerifier
from runtime.clients import MeshClients

log = logging.getLogger(__name__)

GENERIC_FAILURE = "invalid or missing credentials"
_API_KEY_PREFIX = "vk_"
_API_KEY_CACHE_SECONDS = 30.0
_TOKEN_CACHE_SIZE = 4096
# The metadata entries that carry a credential; a call may have exactly one of them.
CREDENTIAL_KEYS = ("authorization", "x-api-key")

# A call's metadata as gRPC hands it over (every entry, duplicates included), or a mapping.
Metadata = Mapping[str, str] | Iterable[tuple[str, str | bytes]]


@dataclasses.dataclass(frozen=True, slots=True)
class SecurityOptions:
    """How a service host authenticates (tests replace the sources).

    Attributes:
        keys: verification keys; ``None`` means identity's JWKS, fetched and cached.
        watch_revocations: follow identity's revocation stream.
        api_keys: accept API keys (checked with developer_api).

    """

    keys: KeySource | None = None
    watch_revocations: bool = True
    api_keys: bool = True


class Authenticator:
    """Credentials in, principals out; every failure is the same UNAUTHENTICATED."""

    def __init__(
        self,
        verifier: TokenVerifier,
        table: AccessTable,
        revocations: RevocationSet,
        clients: MeshClients | None,
        *,
        api_keys: bool = True,
        cache_size: int = _TOKEN_CACHE_SIZE,
    ) -> None:
        self.verifier = verifier
        self._cache_size = cache_size
        self.table = table
        self.revocations = revocations
        self._clients = clients
        self._api_keys = api_keys and clients is not None
        # token → its claims (for expiry and revocation) and the principal built from them
        self._tokens: collections.OrderedDict[str, tuple[Claims, Principal]] = collections.OrderedDict()
        self._keys: dict[str, tuple[float, Principal, int]] = {}
        self._key_generation = revocations.key_generation

    async def authenticate(self, metadata: Metadata, client_address: str = "") -> Principal:
        """The principal for a call's metadata.

        Pass the raw invocation metadata, not a dict built from it: a dict keeps one of two
        ``authorization`` entries, and a call with two credentials must be refused.

        Raises:
            Unauthenticated: no credential, more than one, or one that does not verify
                (the reason is logged).

        """
        entries = _entries(metadata)
        try:
            credential = _credential(entries)
            if not credential:
                raise Unauthenticated("authentication required")
            if credential.startswith(_API_KEY_PREFIX):
                principal = await self._api_key(credential, client_address, _origin(entries))
            else:
                principal = await self._token_principal(credential)
            principal = _within_restrictions(principal, client_address, entries)
        except InvalidToken as error:
            log.info("credential refused: %s", error.reason)
            raise Unauthenticated(GENERIC_FAILURE) from None
        _refuse_if_stale(self.revocations, principal)
        return principal

    def authenticate_cached(self, metadata: Metadata, client_address: str = "") -> Principal | None:
        """:meth:`authenticate` without a coroutine for a bearer token verified before; else ``None``.

        ``None`` (no credential, an API key, a token not in the cache) means: await
        :meth:`authenticate`. A cached token is refused exactly as there: expired (its ``exp``
        has passed), revoked (checked on every call), a signing-key revocation since (the cache
        is emptied), the key's restrictions, a stale revocation list.

        Raises:
            Unauthenticated: the cached token is expired or revoked, or the call has two credentials.
            Unavailable: the revocation list is stale.

        """
        entries = _entries(metadata)
        try:
            credential = _credential(entries)
            if not credential or credential.startswith(_API_KEY_PREFIX):
                return None
            principal = self._cached_token(credential)
            if principal is None:
                return None
            principal = _within_restrictions(principal, client_address, entries)
        except InvalidToken as error:
            log.info("credential refused: %s", error.reason)
            raise Unauthenticated(GENERIC_FAILURE) from None
        _refuse_if_stale(self.revocations, principal)
        return principal

    def _cached_token(self, token: str) -> Principal | None:
        """The principal of a token verified before (expiry and revocation checked now), or ``None``."""
        if self._key_generation != self.revocations.key_generation:
            # A signing key was revoked: every cached token is verified again, against the trusted keys.
            self._key_generation = self.revocations.key_generation
            self._tokens.clear()
        cached = self._tokens.get(token)
        if cached is None:
            return None
        claims, principal = cached
        if claims.expires_at + self.verifier.leeway < time.time():
            del self._tokens[token]
            raise InvalidToken("expired")
        if self.revocations.is_revoked(claims):
            raise InvalidToken("token revoked")
        self._tokens.move_to_end(token)
        return principal

    async def _token_principal(self, token: str) -> Principal:
        cached = self._cached_token(token)
        if cached is not None:
            return cached
        claims = await self.verifier.verify(token)
        principal = self._principal(claims, token)
        self._tokens[token] = (claims, principal)
        if len(self._tokens) > self._cache_size:
            self._tokens.popitem(last=False)
        return principal

    def _principal(self, claims: Claims, credential: str) -> Principal:
        subject = claims.subject
        restrictions = NO_RESTRICTIONS  # only a key's own token carries (and may carry) restrictions
        if subject.startswith("services/"):
            if claims.role != "SERVICE":
                raise InvalidToken("service subject without the SERVICE role")
            # Exactly what identity put in its token: the permissions of the calls its contract declares
            # (platform-wide, but nothing more); "*" in a service token is refused rather than honoured.
            if "*" in claims.scopes:
                raise InvalidToken("service token with a wildcard scope")
            kind, permissions, role = PrincipalKind.SERVICE, frozenset(claims.scopes), "SERVICE"
        elif _API_KEY_SUBJECT.match(subject):
            if not claims.scopes:
                raise InvalidToken("API key token without scopes")
            if subject.split("/", 2)[1] != claims.organization_id:
                raise InvalidToken("API key token for another organisation")
            kind, permissions, role = PrincipalKind.API_KEY, frozenset(claims.scopes), claims.role
            restrictions = claims.restrictions
        elif subject.startswith("users/"):
            try:
                role_value = Role.parse(claims.role)
            except ValueError:
                raise InvalidToken(f"unknown role {claims.role!r}") from None
            permissions = self.table.permissions(role_value)
            if claims.scopes:  # a down-scoped token never exceeds its role
                permissions = frozenset(claims.scopes) if "*" in permissions else permissions & frozenset(claims.scopes)
            kind, role = PrincipalKind.USER, role_value.name
        else:
            raise InvalidToken("unknown kind of subject")
        if role != "SUPER_ADMIN" and kind is not PrincipalKind.SERVICE and not claims.organization_id:
            raise InvalidToken("token without an organisation")
        return Principal(
            subject=subject,
            kind=kind,
            organization_id=claims.organization_id,
            role=role,
            permissions=permissions,
            token_id=claims.token_id,
            session_id=claims.session_id,
            credential=credential,
            restrictions=restrictions,
        )

    async def _api_key(self, secret: str, client_address: str, origin: str) -> Principal:
        if not self._api_keys or self._clients is None:
            raise InvalidToken("API keys are not accepted here")
        digest = hashlib.sha256(secret.encode()).hexdigest()
        cached = self._keys.get(digest)
        # An organisation revocation seen since the verification (suspension, closing) means verify again.
        if (
            cached is not None
            and time.monotonic() - cached[0] < _API_KEY_CACHE_SECONDS
            and cached[2] == self.revocations.organization_epoch(cached[1].organization_id)
        ):
            principal = cached[1]
        else:
            started = time.monotonic()
            epochs = self.revocations.organization_epochs()
            principal = await self._verify_api_key(secret, client_address, origin)
            epoch = self.revocations.organization_epoch(principal.organization_id)
            if epoch == epochs.get(principal.organization_id, 0):  # never cache an answer that may predate one
                self._keys[digest] = (started, principal, epoch)
            if len(self._keys) > self._cache_size:
                self._keys.pop(next(iter(self._keys)))
        if self.revocations.principal_revoked(principal.subject):
            self._keys.pop(digest, None)
            raise InvalidToken("API key revoked")
        return principal

    async def _verify_api_key(self, secret: str, client_address: str, origin: str) -> Principal:
        from vocelio.developer_api.v1 import developer_api_service_pb2 as pb
        from vocelio.developer_api.v1 import developer_api_service_pb2_grpc as pb_grpc

        assert self._clients is not None
        stub = self._clients.stub("developer_api", pb_grpc.DeveloperApiServiceStub)
        try:
            reply: Any = await stub.VerifyApiKey(
                pb.VerifyApiKeyRequest(secret=secret, client_address=client_address, origin=origin), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            raise InvalidToken(f"API key verification failed: {error.code().name}") from None
        if not reply.scopes:
            raise InvalidToken("API key without scopes")
        expires = json_format.MessageToDict(reply).get("expireTime", "")
        log.debug("API key %s verified (expires %s)", reply.api_key, expires or "never")
        return Principal(
            subject=reply.api_key,
            kind=PrincipalKind.API_KEY,
            organization_id=reply.organization_id,
            role="",
            permissions=frozenset(reply.scopes),
            credential=secret,
            restrictions=KeyRestrictions.of(
                ip_ranges=reply.restrictions.allowed_ip_ranges,
                origins=reply.restrictions.allowed_origins,
                agents=reply.restrictions.allowed_agents,
                expires_at=reply.expire_time.ToSeconds() if reply.HasField("expire_time") else None,
            ),
        )


def _refuse_if_stale(revocations: RevocationSet, principal: Principal) -> None:
    """UNAVAILABLE while this process has not heard from identity's revocation stream for too long.

    Mesh services are exempt: their own calls (the revocation stream itself among them)
    must go on while identity is away, and service credentials are not revoked per token.
    """
    if principal.kind is not PrincipalKind.SERVICE and revocations.stale():
        log.warning("refusing %s: the revocation list is stale", principal.kind.name.lower())
        raise Unavailable("cannot check credentials right now: the revocation list is out of date; retry shortly")


def _entries(metadata: Metadata) -> Sequence[tuple[str, str | bytes]]:
    """Every entry of a call's metadata (a tuple as the chain passes it is used as it is)."""
    if isinstance(metadata, tuple):
        return metadata
    return list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata)


def _origin(entries: Sequence[tuple[str, str | bytes]]) -> str:
    for key, value in entries:
        if key == "origin" and isinstance(value, str):
            return value
    return ""


def _within_restrictions(
    principal: Principal, client_address: str, entries: Sequence[tuple[str, str | bytes]]
) -> Principal:
    """The principal, if this call meets its key's restrictions (checked on every call, cached or not)."""
    if not principal.restrictions.empty:
        failure = principal.restrictions.failure(client_address, _origin(entries))
        if failure is not None:
            raise InvalidToken(f"{principal.subject}: {failure}")
    return principal


# An API key is named under its organisation (organizations/{organization}/api_keys/{api_key}).
_API_KEY_SUBJECT = re.compile(r"^organizations/[^/]+/api_keys/[^/]+$")


def _credential(entries: Sequence[tuple[str, str | bytes]]) -> str:
    """The one credential of a call; ``""`` when there is none (or not a bearer one).

    Raises:
        InvalidToken: more than one credential entry (two ``authorization``, or
            ``authorization`` and ``x-api-key``): which one counts must never be a guess.

    """
    found = [(key, value) for key, value in entries if key in CREDENTIAL_KEYS]
    if len(found) > 1:
        raise InvalidToken(f"{len(found)} credentials on one call")
    if not found:
        return ""
    key, value = found[0]
    if not isinstance(value, str):
        return ""
    if key == "authorization":
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    return value.strip()


def identity_jwks(clients: MeshClients, *, ttl: float = 300.0, max_age: float = 3600.0) -> JwksCache:
    """A JWKS cache that fetches identity's key set over gRPC (``GetJwks``, public), used for ``ttl`` seconds."""

    async def fetch() -> dict[str, Any]:
        from vocelio.identity.v1 import identity_service_pb2 as pb
        from vocelio.identity.v1 import identity_service_pb2_grpc as pb_grpc

        stub = pb_grpc.IdentityServiceStub(clients.plain_channel("identity"))  # type: ignore[no-untyped-call]
        reply = await stub.GetJwks(pb.GetJwksRequest(), timeout=5)
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    return JwksCache(fetch, ttl=ttl, max_age=max_age)
