"""The ``parent`` of identity's lists: ``organizations/{organization}``, or ``organizations/-`` (AIP-159).

A caller lists only its own organisation. Platform principals (SUPER_ADMIN, services)
may name any organisation, or ``-`` for all of them. Any other organisation is refused
with one answer whether or not it exists, so a parent never tells a caller which
organisations there are.
"""

from __future__ import annotations

import re

from mesh.errors import InvalidArgument, PermissionDenied
from mesh.principal import Principal

_PARENT = re.compile(r"^organizations/([^/]+)$")
EVERY_ORGANIZATION = "-"


def organization_scope(principal: Principal, parent: str, *, field: str = "parent") -> str | None:
    """The organisation id a list is limited to, or ``None`` for every organisation.

    Raises:
        InvalidArgument: ``parent`` is not ``organizations/{organization}``.
        PermissionDenied: the caller may not list that organisation (or all of them).

    """
    match = _PARENT.match(parent)
    if match is None:
        raise InvalidArgument(
            f"{field} must be organizations/{{organization}}", {field: "organizations/{organization}"}
        )
    organization = match.group(1)
    if principal.is_platform_admin:
        return None if organization == EVERY_ORGANIZATION else organization
    if not principal.organization_id or organization != principal.organization_id:
        raise PermissionDenied(f"the caller may not list {parent}")
    return organization
