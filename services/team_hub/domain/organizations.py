"""Organisations: the lifecycle state machine and what an update may change.

    ACTIVE ──suspend──► SUSPENDED ──reactivate──► ACTIVE
    ACTIVE | SUSPENDED ──close──► CLOSED   (terminal)

Repeating a transition that already happened (suspending a SUSPENDED organisation) is
a no-op, so the methods are safe to retry.
"""

from __future__ import annotations

import enum

from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied

MAX_REASON = 500
MAX_CONCURRENCY = 10_000

# What an organisation ADMIN may change, and what only platform operators (and services) may.
ADMIN_FIELDS = frozenset({"display_name", "billing_email", "country_code", "labels"})
PLATFORM_FIELDS = frozenset({"plan", "concurrency_limit", "max_members"})


class OrganizationState(enum.StrEnum):
    """Lifecycle state (``OrganizationState`` without its prefix)."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


class Plan(enum.StrEnum):
    """Commercial plan (``OrganizationPlan`` without its prefix)."""

    TRIAL = "TRIAL"
    PAY_AS_YOU_GO = "PAY_AS_YOU_GO"
    ENTERPRISE = "ENTERPRISE"


class Transition(enum.StrEnum):
    """What an operator does to an organisation's state."""

    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    CLOSE = "close"


_TARGET = {
    Transition.SUSPEND: OrganizationState.SUSPENDED,
    Transition.REACTIVATE: OrganizationState.ACTIVE,
    Transition.CLOSE: OrganizationState.CLOSED,
}
_FROM = {
    Transition.SUSPEND: {OrganizationState.ACTIVE},
    Transition.REACTIVATE: {OrganizationState.SUSPENDED},
    Transition.CLOSE: {OrganizationState.ACTIVE, OrganizationState.SUSPENDED},
}


def transition(current: OrganizationState, action: Transition) -> OrganizationState | None:
    """The state after ``action``, or ``None`` when the organisation is there already.

    Raises:
        FailedPrecondition: the transition is not allowed from ``current``.

    """
    target = _TARGET[action]
    if current is target:
        return None
    if current not in _FROM[action]:
        raise FailedPrecondition(f"a {current.name} organisation cannot be {_past(action)}")
    return target


def past_tense(action: Transition) -> str:
    """``suspended``, ``reactivated`` or ``closed``."""
    return {"suspend": "suspended", "reactivate": "reactivated", "close": "closed"}[action.value]


def may_transition(action: Transition, *, platform_admin: bool, admin_of_it: bool) -> bool:
    """Whether the caller may make the transition: platform operators any; an organisation's ADMIN may close it."""
    return platform_admin or (action is Transition.CLOSE and admin_of_it)


_past = past_tense


def ensure_writable(state: OrganizationState, *, platform_admin: bool) -> None:
    """Raise unless the organisation's members, teams and invitations may change.

    Raises:
        FailedPrecondition: CLOSED (for everyone), or SUSPENDED (except for platform operators).

    """
    if state is OrganizationState.CLOSED:
        raise FailedPrecondition("the organisation is closed")
    if state is OrganizationState.SUSPENDED and not platform_admin:
        raise FailedPrecondition("the organisation is suspended: nothing can be changed until it is reactivated")


def reason(value: str, field: str = "reason", *, required: bool) -> str:
    """A state reason, stripped, at most 500 characters.

    Raises:
        InvalidArgument: missing when required, or too long.

    """
    text = value.strip()
    if required and not text:
        raise InvalidArgument("a reason is required", {field: "required"})
    if len(text) > MAX_REASON:
        raise InvalidArgument("reason too long", {field: f"at most {MAX_REASON} characters"})
    return text


def update_fields(paths: list[str], resolved: tuple[str, ...], *, platform_admin: bool) -> set[str]:
    """The fields an UpdateOrganization changes, of those the contract lets it change.

    Args:
        paths: the update mask as sent.
        resolved: what the contract's field behaviours make of it (``UpdateMask.resolve``):
            ``*`` is every updatable field, an empty mask the populated ones.
        platform_admin: whether platform fields may change.

    Raises:
        PermissionDenied: a platform field named by an organisation member.

    """
    if platform_admin:
        return set(resolved)
    named = sorted(p for p in paths if p in PLATFORM_FIELDS)
    if named:
        raise PermissionDenied(f"only platform operators may change {', '.join(named)}")
    # "*" and an implied mask mean "everything I may change".
    return set(resolved) & ADMIN_FIELDS


def concurrency_limit(value: int, field: str = "organization.concurrency_limit") -> int:
    """0 (the plan's default) or 1 to 10,000.

    Raises:
        InvalidArgument: out of range.

    """
    if not 0 <= value <= MAX_CONCURRENCY:
        raise InvalidArgument("concurrency limit out of range", {field: f"0 to {MAX_CONCURRENCY}"})
    return value


def max_members(value: int, field: str = "organization.max_members") -> int:
    """0 (unlimited) or a positive seat count.

    Raises:
        InvalidArgument: negative.

    """
    if value < 0:
        raise InvalidArgument("max_members cannot be negative", {field: "0 (unlimited) or more"})
    return value
