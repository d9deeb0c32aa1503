"""Whose resources a caller may see and change, and what "not yours" looks like.

Every organisation-scoped resource lives under ``organizations/{organization}``. Callers
read and change their own organisation's resources. Platform principals (SUPER_ADMIN and
mesh services) may read every organisation's and list across them with
``organizations/-`` (AIP-159), but change only their own organisation's.

The rule that keeps ids private: a resource under an organisation the caller may not read
answers **exactly** what a missing one answers — :func:`not_found`, the same status, the
same message, the same details, reached by the same query — so no response tells one
organisation whether an id exists in another. A *parent* the caller does not belong to
(``organizations/other`` on a List or Create) answers PERMISSION_DENIED with one message
whether or not that organisation exists.
"""

from __future__ import annotations

import dataclasses

from mesh.errors import FailedPrecondition, NotFound, PermissionDenied
from mesh.kit.names import WILDCARD
from mesh.principal import Principal

_FOREIGN_PARENT = "the caller may not act in the organisation named by parent"


@dataclasses.dataclass(frozen=True, slots=True)
class ReadScope:
    """The organisations a read may touch.

    Attributes:
        organization_id: the one organisation, or ``None`` for every organisation.

    """

    organization_id: str | None

    @property
    def everywhere(self) -> bool:
        """The scope spans every organisation (a platform principal with ``organizations/-``)."""
        return self.organization_id is None

    def binding(self) -> str:
        """The scope as a page-token binding value."""
        return WILDCARD if self.organization_id is None else self.organization_id


def not_found(name: str) -> NotFound:
    """The one NOT_FOUND for a resource that is missing *or* belongs to another organisation."""
    return NotFound(f"{name} not found")


def may_read(principal: Principal, organization_id: str) -> bool:
    """Whether the caller may read a resource of this organisation."""
    if principal.is_platform_admin:
        return True
    return bool(principal.organization_id) and principal.organization_id == organization_id


def read_scope_for_name(principal: Principal, organization_id: str) -> ReadScope | None:
    """The scope of a read by name (Get), or ``None`` when the caller may not read there.

    The caller answers :func:`not_found` on ``None`` — after running the same lookup it
    would run otherwise, so timing tells nothing either.
    """
    return ReadScope(organization_id) if may_read(principal, organization_id) else None


def list_scope(principal: Principal, parent_organization: str) -> ReadScope:
    """The scope of a List under ``organizations/{parent_organization}`` (``-`` for every one).

    Raises:
        PermissionDenied: the caller may not list there (``-`` without being a platform
            principal, or another organisation), with one message whether or not it exists.

    """
    if parent_organization == WILDCARD:
        if principal.is_platform_admin:
            return ReadScope(None)
        raise PermissionDenied(_FOREIGN_PARENT)
    if not may_read(principal, parent_organization):
        raise PermissionDenied(_FOREIGN_PARENT)
    return ReadScope(parent_organization)


def write_organization(principal: Principal, parent_organization: str) -> str:
    """The organisation a Create under ``parent`` writes into: the caller's own.

    Raises:
        FailedPrecondition: the caller acts outside any organisation.
        PermissionDenied: ``parent`` is another organisation (or ``-``), whether or not it exists.

    """
    if not principal.organization_id:
        raise FailedPrecondition("act within an organisation to change its resources")
    if parent_organization != principal.organization_id:
        raise PermissionDenied(_FOREIGN_PARENT)
    return parent_organization


def require_writable(principal: Principal, organization_id: str, name: str) -> None:
    """Allow a change to a resource the caller can read only within the caller's organisation.

    Raises:
        NotFound: the caller cannot even read the resource (the same NOT_FOUND as a missing one).
        PermissionDenied: a platform principal reaching into another organisation.

    """
    if not may_read(principal, organization_id):
        raise not_found(name)
    if organization_id != principal.organization_id:
        raise PermissionDenied("platform principals may read other organisations' resources but not change them")
