"""Resource allow-lists of the caller (an API key's ``allowed_agents``), for every service.

A key limited to some agents may use only those: a Get, Update, Delete, Publish … of
another agent answers :func:`mesh.kit.tenancy.not_found`, exactly what a missing agent
answers (NOT_FOUND, not PERMISSION_DENIED, so the key learns nothing about the agents it
may not use), and a List shows only the allowed ones. A service whose resources name an
agent (calls, campaigns, phone numbers) checks that agent with :func:`require_allowed`.

The rules themselves are :class:`mesh.restrictions.KeyRestrictions`; the principal carries
them (:attr:`mesh.principal.Principal.restrictions`).
"""

from __future__ import annotations

from mesh.errors import PermissionDenied
from mesh.kit import tenancy
from mesh.principal import Principal
from mesh.restrictions import AGENTS

NOT_ALLOWED_TO_CREATE = "the API key may only use the agents it allows; this one is not among them"


def allowed(principal: Principal, name: str, collection: str = AGENTS) -> bool:
    """Whether the caller may use the named resource of an allow-listed kind."""
    return principal.restrictions.allows(name, collection)


def require_allowed(principal: Principal, name: str, collection: str = AGENTS) -> None:
    """Refuse a resource the caller's allow-list leaves out, as if it did not exist.

    Raises:
        NotFound: the one NOT_FOUND of a missing resource (:func:`mesh.kit.tenancy.not_found`).

    """
    if not principal.restrictions.allows(name, collection):
        raise tenancy.not_found(name)


def require_allowed_new(principal: Principal, name: str, collection: str = AGENTS) -> None:
    """Refuse to create a resource the caller's allow-list would leave out.

    Nothing exists yet to hide, so this is PERMISSION_DENIED.

    Raises:
        PermissionDenied: the name is not in the caller's allow-list.

    """
    if not principal.restrictions.allows(name, collection):
        raise PermissionDenied(NOT_ALLOWED_TO_CREATE)


def allowed_ids(principal: Principal, organization_id: str, collection: str = AGENTS) -> frozenset[str] | None:
    """The ids a List may show in the organisation; ``None`` when the caller is not limited.

    A List across organisations (``organizations/-``) by a limited caller passes its own
    organisation; allow-lists only ever name resources of the key's own organisation.
    """
    return principal.restrictions.allowed_ids(organization_id, collection)
