"""Who is calling: the authenticated principal of the current RPC.

The authentication interceptor sets it for the duration of a call; servicers and
domain code read it with :func:`current`. Outgoing calls to other services propagate
its credential (or, for work the service does on its own, the service's credential).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
from collections.abc import Iterator

from mesh.errors import Unauthenticated
from mesh.restrictions import NO_RESTRICTIONS, KeyRestrictions


class PrincipalKind(enum.Enum):
    """What kind of credential authenticated the caller."""

    USER = "user"
    API_KEY = "api_key"
    SERVICE = "service"


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: ``users/{id}``, ``api_keys/{id}`` or ``services/{name}``.
        kind: the kind of credential.
        organization_id: the organisation the credential acts in; ``""`` for services and
            for a platform administrator acting outside any organisation.
        role: the role name (``"ADMIN"``; ``"SERVICE"`` for services).
        permissions: the effective permissions (``"*"`` means all).
        token_id: the access token's ``jti`` (``""`` for API keys).
        session_id: the refresh-token family (``sid``) the token belongs to.
        credential: the raw credential, for propagation to other services. Never logged.
        restrictions: an API key's limits (IP ranges, origins, agents, expiry), for a key
            used directly and for a token minted from one; checked on every call.

    """

    subject: str
    kind: PrincipalKind
    organization_id: str
    role: str
    permissions: frozenset[str]
    token_id: str = ""
    session_id: str = ""
    credential: str = dataclasses.field(default="", repr=False)
    restrictions: KeyRestrictions = NO_RESTRICTIONS

    def has(self, permission: str) -> bool:
        """Whether the principal holds a permission."""
        return "*" in self.permissions or permission in self.permissions

    @property
    def is_service(self) -> bool:
        """The caller is another mesh service."""
        return self.kind is PrincipalKind.SERVICE

    @property
    def is_platform_admin(self) -> bool:
        """The caller may act across organisations (SUPER_ADMIN or a service)."""
        return self.role in ("SUPER_ADMIN", "SERVICE")

    def can_access(self, organization_id: str) -> bool:
        """Whether the caller may see a resource of this organisation."""
        return self.is_platform_admin or (bool(self.organization_id) and organization_id == self.organization_id)


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("vocelio_principal", default=None)


def current() -> Principal:
    """The principal of the running RPC.

    Raises:
        Unauthenticated: no principal is set (a public method, or code outside an RPC).

    """
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("authentication required")
    return principal


def current_or_none() -> Principal | None:
    """The principal of the running RPC, or ``None`` on a public method."""
    return _current.get()


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Run a block as this principal (the interceptor, and tests, use it)."""
    token = _current.set(principal)
    try:
        yield
    finally:
        _current.reset(token)


def bind(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Make ``principal`` the running call's until :func:`unbind` (the server wrapper's cheaper :func:`acting_as`)."""
    return _current.set(principal)


def unbind(token: contextvars.Token[Principal | None]) -> None:
    """Undo the :func:`bind` that returned ``token``."""
    _current.reset(token)
