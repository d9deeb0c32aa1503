"""Whose agents a caller may see and change.

Every agent belongs to one organisation. Callers read and change their own
organisation's agents; platform administrators (SUPER_ADMIN, and mesh services) may
read every organisation's agents but change only their own organisation's. An agent
the caller may not read does not exist as far as the caller can tell: the same
NOT_FOUND, with the same message, as an agent that was never there.
"""

from __future__ import annotations

from mesh.errors import FailedPrecondition, PermissionDenied
from mesh.principal import Principal


def reading_scope(principal: Principal) -> str | None:
    """The organisation whose agents the caller may read by name; ``None`` means every one."""
    return None if principal.is_platform_admin else principal.organization_id


def listing_scope(principal: Principal) -> str | None:
    """The organisation ``ListAgents`` lists; ``None`` (every one) for a platform administrator outside any."""
    if principal.organization_id or not principal.is_platform_admin:
        return principal.organization_id
    return None


def owning_organization(principal: Principal) -> str:
    """The organisation a new agent belongs to: the caller's.

    Raises:
        FailedPrecondition: the caller acts outside any organisation (a platform
            administrator's or a service's own credential).

    """
    if not principal.organization_id:
        raise FailedPrecondition("agents belong to an organisation: act within one to create an agent")
    return principal.organization_id


def require_writable(principal: Principal, organization_id: str) -> None:
    """Allow changes to an agent the caller can read only within the caller's organisation.

    Raises:
        PermissionDenied: a platform administrator reaching into another organisation.

    """
    if organization_id != principal.organization_id:
        raise PermissionDenied("platform administrators may read other organisations' agents but not change them")
