"""The rules of API keys, without I/O: names, scopes, expiry, rotation, restrictions, state.

Everything here takes plain values and the current time, and raises ``mesh.errors``
exceptions with field violations named after the request fields (``api_key.scopes`` …).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
import secrets
from collections.abc import Iterable, Mapping

from mesh.access import AccessTable, Role
from mesh.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mesh.principal import Principal
from services.developer_api.restrictions import Restrictions, validate_restrictions

ORGANIZATIONS = "organizations"
COLLECTION = "api_keys"
LOG_COLLECTION = "api_request_logs"
# The AIP-159 wildcard: "organizations/-" (platform principals) and "…/api_keys/-" (every key).
EVERY = "-"
NOT_FOUND_MESSAGE = "API key not found"
MAX_SCOPES = 100
MAX_ACTIVE_KEYS_PER_ORGANIZATION = 100
MAX_DISPLAY_NAME = 100
MAX_REVOKE_REASON = 500
MAX_LABELS = 64
MIN_LIFETIME = datetime.timedelta(hours=1)
MAX_LIFETIME = datetime.timedelta(days=365)
DEFAULT_OVERLAP = datetime.timedelta(hours=24)
MAX_OVERLAP = datetime.timedelta(days=7)
# An idempotent create or rotate answers with the same secret for this long, then forgets it.
IDEMPOTENCY_WINDOW = datetime.timedelta(hours=24)
# last_used_time is kept to the minute, so a busy key costs at most one write a minute.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)

# Permissions a PUBLISHABLE key (one that ships to browsers and apps) may hold: starting
# and following web calls with the organisation's agents and voices, nothing that reads
# or changes the organisation's configuration.
CLIENT_SAFE_SCOPES = frozenset(
    {"calls.create", "calls.get", "calls.hangup", "agents.get", "voices.get", "voices.list", "voices.preview"}
)

_USER_KEY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,61}[a-z0-9]$")
_ANY_KEY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ORGANIZATION_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


class Environment(enum.StrEnum):
    """Live or test traffic (``vocelio.developer_api.v1.ApiKeyEnvironment`` without its prefix)."""

    LIVE = "LIVE"
    TEST = "TEST"


class KeyType(enum.StrEnum):
    """Where a key may be used (``ApiKeyType`` without its prefix)."""

    SECRET = "SECRET"
    PUBLISHABLE = "PUBLISHABLE"


class KeyState(enum.StrEnum):
    """Lifecycle state (``ApiKeyState`` without its prefix). EXPIRED and REVOKED are terminal."""

    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"


@dataclasses.dataclass(frozen=True, slots=True)
class KeySettings:
    """The caller-chosen part of a key, validated."""

    display_name: str
    key_type: KeyType
    environment: Environment
    scopes: tuple[str, ...]
    restrictions: Restrictions
    expire_time: datetime.datetime | None
    labels: dict[str, str]


def new_key_id() -> str:
    """A generated key id, ``k_`` + 16 base32 characters (user-chosen ids never contain ``_``)."""
    return "k_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def key_name(organization_id: str, key_id: str) -> str:
    """The resource name of a key, ``organizations/{organization}/api_keys/{api_key}``."""
    return f"{ORGANIZATIONS}/{organization_id}/{COLLECTION}/{key_id}"


def log_name(organization_id: str, log_id: str) -> str:
    """The resource name of a request log entry."""
    return f"{ORGANIZATIONS}/{organization_id}/{LOG_COLLECTION}/{log_id}"


def not_found(name: str) -> NotFound:
    """The one NotFound for a key that is missing or belongs to another organisation."""
    return NotFound(f"{NOT_FOUND_MESSAGE}: {name}")


def _split(name: str, collection: str) -> tuple[str, str] | None:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != ORGANIZATIONS or parts[2] != collection:
        return None
    return parts[1], parts[3]


def parse_key_name(name: str, field: str = "name", *, any_key: bool = False) -> tuple[str, str]:
    """The organisation id and key id in ``organizations/{organization}/api_keys/{api_key}``.

    Args:
        name: the name.
        field: the request field, for the error.
        any_key: accept ``-`` as the key id (every key of the organisation).

    Raises:
        InvalidArgument: not a key name (``organizations/-`` is never accepted here).

    """
    parts = _split(name, COLLECTION)
    if (
        parts is None
        or not _ORGANIZATION_ID.match(parts[0])
        or not (_ANY_KEY_ID.match(parts[1]) or (any_key and parts[1] == EVERY))
    ):
        shape = f"{ORGANIZATIONS}/{{organization}}/{COLLECTION}/{{api_key}}"
        raise InvalidArgument(f"expected an API key name like {shape}", {field: f"must look like {shape}"})
    return parts


def parse_parent(parent: str, field: str = "parent", *, wildcard: bool = True) -> str:
    """The organisation id in ``organizations/{organization}``, or ``-`` for every organisation.

    Raises:
        InvalidArgument: not an organisation name, or ``-`` where it is not allowed.

    """
    collection, _, organization_id = parent.partition("/")
    if collection == ORGANIZATIONS and (
        _ORGANIZATION_ID.match(organization_id) or (wildcard and organization_id == EVERY)
    ):
        return organization_id
    raise InvalidArgument(
        "expected a parent like organizations/{organization}", {field: "must look like organizations/{organization}"}
    )


def readable_organization(principal: Principal, organization_id: str, name: str) -> str:
    """The organisation of a named key, if the caller may see it.

    Raises:
        NotFound: another organisation's key, with exactly the answer a missing key gets.

    """
    if not principal.can_access(organization_id):
        raise not_found(name)
    return organization_id


def list_scope(principal: Principal, organization_id: str, what: str) -> str | None:
    """The organisation a list reads (``None`` for every organisation, ``organizations/-``).

    The answer for an organisation the caller does not belong to never depends on whether
    that organisation exists: nothing is looked up before refusing.

    Raises:
        PermissionDenied: another organisation, or ``-`` for a caller that is not a platform principal.

    """
    if organization_id == EVERY:
        if not principal.is_platform_admin:
            raise PermissionDenied(f"only platform administrators may list {what} across organisations")
        return None
    if not principal.can_access(organization_id):
        raise PermissionDenied(f"you may list only your own organisation's {what}")
    return organization_id


def validate_request_id(request_id: str) -> str:
    """A request_id: empty (not deduplicated) or a UUID4 in its canonical form (AIP-155).

    Raises:
        InvalidArgument: anything else.

    """
    if request_id and not _UUID4.match(request_id):
        raise InvalidArgument("request_id must be a UUID4", {"request_id": "a UUID4 like 3f2b8c1e-…-4…"})
    return request_id


def validate_key_id(key_id: str) -> str:
    """A caller-chosen key id, or a generated one when empty.

    Raises:
        InvalidArgument: not 4 to 63 characters of ``[a-z0-9-]`` starting and ending alphanumeric.

    """
    if not key_id:
        return new_key_id()
    if not _USER_KEY_ID.match(key_id):
        raise InvalidArgument(
            "invalid api_key_id", {"api_key_id": "4 to 63 characters of a-z, 0-9 and -, not starting or ending with -"}
        )
    return key_id


def validate_display_name(value: str, field: str = "api_key.display_name") -> str:
    """A display name, stripped.

    Raises:
        InvalidArgument: empty, longer than 100 characters, or containing control characters.

    """
    name = value.strip()
    if not name:
        raise InvalidArgument("a display name is required", {field: "required"})
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidArgument("display name too long", {field: f"at most {MAX_DISPLAY_NAME} characters"})
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument("display name contains control characters", {field: "no control characters"})
    return name


def validate_labels(labels: Mapping[str, str], field: str = "api_key.labels") -> dict[str, str]:
    """Labels: at most 64, keys like ``crm_sync``, values up to 255 characters.

    Raises:
        InvalidArgument: a bad key or value.

    """
    if len(labels) > MAX_LABELS:
        raise InvalidArgument("too many labels", {field: f"at most {MAX_LABELS}"})
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise InvalidArgument("invalid label key", {f"{field}[{key}]": "lower-case letter, then [a-z0-9_-]{0,62}"})
        if len(value) > 255:
            raise InvalidArgument("label value too long", {f"{field}[{key}]": "at most 255 characters"})
    return dict(sorted(labels.items()))


def held_permissions(permissions: frozenset[str], role: str, table: AccessTable) -> frozenset[str]:
    """What a principal holds: its own permissions, or else everything its role allows."""
    if permissions:
        return permissions
    try:
        return table.permissions(Role.parse(role))
    except ValueError:
        return frozenset()


def validate_scopes(
    requested: Iterable[str],
    *,
    held: frozenset[str],
    creator_role: str,
    known: frozenset[str],
    key_type: KeyType,
    field: str = "api_key.scopes",
) -> tuple[str, ...]:
    """The scopes of a new key: 1 to 100 known permissions the creator holds.

    ``"*"`` (every permission) is for keys a SUPER_ADMIN creates, alone.

    Raises:
        InvalidArgument: none, too many, unknown, or not allowed for a publishable key.
        PermissionDenied: scopes the creator does not hold, named in the message.

    """
    scopes = tuple(sorted({s.strip() for s in requested if s.strip()}))
    if not scopes:
        raise InvalidArgument("an API key needs at least one scope", {field: "at least one permission"})
    if len(scopes) > MAX_SCOPES:
        raise InvalidArgument("too many scopes", {field: f"at most {MAX_SCOPES}"})
    if "*" in scopes:
        if creator_role != Role.SUPER_ADMIN.name:
            raise PermissionDenied("only a SUPER_ADMIN may create a key with every permission (*)")
        if len(scopes) > 1:
            raise InvalidArgument("* already holds every permission", {field: "* must be the only scope"})
    unknown = [s for s in scopes if s != "*" and s not in known]
    if unknown:
        raise InvalidArgument(f"unknown scopes: {', '.join(unknown)}", {field: "must be permissions of the API"})
    if "*" not in held:
        beyond = [s for s in scopes if s not in held]
        if beyond:
            raise PermissionDenied(f"scopes exceed your own permissions: {', '.join(beyond)}")
    if key_type is KeyType.PUBLISHABLE:
        unsafe = [s for s in scopes if s not in CLIENT_SAFE_SCOPES]
        if unsafe:
            raise InvalidArgument(
                f"publishable keys may not hold {', '.join(unsafe)}",
                {field: f"publishable keys hold only {', '.join(sorted(CLIENT_SAFE_SCOPES))}"},
            )
    return scopes


def narrowed_scopes(current: Iterable[str], requested: Iterable[str], *, known: frozenset[str]) -> tuple[str, ...]:
    """New scopes for an existing key: never more than it has.

    Raises:
        InvalidArgument: empty, unknown, or adding a scope the key does not hold.

    """
    field = "api_key.scopes"
    scopes = tuple(sorted({s.strip() for s in requested if s.strip()}))
    if not scopes:
        raise InvalidArgument("an API key needs at least one scope; revoke it instead", {field: "at least one"})
    existing = set(current)
    if "*" in scopes and "*" not in existing:
        raise InvalidArgument("scopes may only be removed", {field: "may only remove scopes"})
    if "*" in scopes:
        return ("*",)
    unknown = [s for s in scopes if s not in known]
    if unknown:
        raise InvalidArgument(f"unknown scopes: {', '.join(unknown)}", {field: "must be permissions of the API"})
    added = [s for s in scopes if s not in existing and "*" not in existing]
    if added:
        raise InvalidArgument(
            f"scopes may only be removed; create a new key to add {', '.join(added)}", {field: "may only remove scopes"}
        )
    return scopes


def check_creator_holds(scopes: Iterable[str], held: frozenset[str]) -> None:
    """Refuse a rotation that would hand its caller a secret more powerful than they are.

    Raises:
        PermissionDenied: the key holds scopes the caller does not.

    """
    if "*" in held:
        return
    beyond = [s for s in scopes if s not in held]
    if beyond:
        raise PermissionDenied(f"the key holds permissions you do not: {', '.join(beyond)}")


def validate_new_expiry(
    expire_time: datetime.datetime | None, now: datetime.datetime, field: str = "api_key.expire_time"
) -> datetime.datetime | None:
    """The expiry of a new key: unset (never), or between 1 hour and 1 year ahead.

    Raises:
        InvalidArgument: in the past, too soon or too far.

    """
    if expire_time is None:
        return None
    if expire_time < now + MIN_LIFETIME:
        raise InvalidArgument("expire_time must be at least 1 hour ahead", {field: "at least 1 hour in the future"})
    if expire_time > now + MAX_LIFETIME:
        raise InvalidArgument("expire_time must be within 1 year", {field: "at most 1 year in the future"})
    return expire_time


def brought_forward_expiry(
    current: datetime.datetime | None, requested: datetime.datetime | None, now: datetime.datetime
) -> datetime.datetime:
    """A new expiry for an existing key: in the future, and never later than the current one.

    Raises:
        InvalidArgument: unset, in the past, or later than the current expiry (or than 1 year).

    """
    field = "api_key.expire_time"
    if requested is None:
        raise InvalidArgument("expire_time can only be brought forward, not removed", {field: "required"})
    if requested <= now:
        raise InvalidArgument("expire_time must be in the future; revoke the key instead", {field: "in the future"})
    if current is not None and requested > current:
        raise InvalidArgument("expire_time can only be brought forward", {field: "not later than the current expiry"})
    if current is None and requested > now + MAX_LIFETIME:
        raise InvalidArgument("expire_time must be within 1 year", {field: "at most 1 year in the future"})
    return requested


def rotation_expiry(
    current: datetime.datetime | None, overlap: datetime.timedelta | None, now: datetime.datetime
) -> datetime.datetime:
    """When a rotated key stops working: after the overlap (24 h by default), never later than before.

    Raises:
        InvalidArgument: an overlap outside 0 to 7 days.

    """
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    if overlap < datetime.timedelta(0) or overlap > MAX_OVERLAP:
        raise InvalidArgument("overlap must be between 0 and 7 days", {"overlap": "0 to 7 days"})
    end = now + overlap
    return end if current is None else min(end, current)


def effective_state(state: KeyState, expire_time: datetime.datetime | None, now: datetime.datetime) -> KeyState:
    """The state a reader sees: an ACTIVE key past its expiry is EXPIRED."""
    if state is KeyState.ACTIVE and expire_time is not None and expire_time <= now:
        return KeyState.EXPIRED
    return state


def require_active(state: KeyState, action: str) -> None:
    """Refuse to change a key that no longer works.

    Raises:
        FailedPrecondition: the key is EXPIRED or REVOKED.

    """
    if state is not KeyState.ACTIVE:
        raise FailedPrecondition(f"the key is {state.value}; only an ACTIVE key can be {action}")


def require_rotatable(state: KeyState, rotated_to: str) -> None:
    """Refuse a second rotation or the rotation of a dead key.

    Raises:
        FailedPrecondition: already rotated, EXPIRED or REVOKED.

    """
    if rotated_to:
        raise FailedPrecondition(f"the key was already rotated to {rotated_to}")
    require_active(state, "rotated")


def validate_revoke_reason(reason: str) -> str:
    """A revocation reason, stripped.

    Raises:
        InvalidArgument: longer than 500 characters.

    """
    reason = reason.strip()
    if len(reason) > MAX_REVOKE_REASON:
        raise InvalidArgument("reason too long", {"reason": f"at most {MAX_REVOKE_REASON} characters"})
    return reason


def last_used_minute(now: datetime.datetime) -> datetime.datetime:
    """``now`` truncated to the minute, the resolution of last_used_time."""
    return now.replace(second=0, microsecond=0)


def needs_last_used_write(previous: datetime.datetime | None, now: datetime.datetime) -> bool:
    """Whether a verification should record its time (at most once a minute per key)."""
    return previous is None or last_used_minute(now) > previous


# -- settings of a new key -----------------------------------------------------------------


def validate_new_key(
    *,
    display_name: str,
    key_type: KeyType | None,
    environment: Environment | None,
    scopes: Iterable[str],
    restrictions: Restrictions,
    expire_time: datetime.datetime | None,
    labels: Mapping[str, str],
    held: frozenset[str],
    creator_role: str,
    known: frozenset[str],
    organization_id: str,
    now: datetime.datetime,
) -> KeySettings:
    """Everything a new key's creator chose, validated; see the individual rules.

    Raises:
        InvalidArgument: a malformed field.
        PermissionDenied: scopes beyond the creator's permissions.

    """
    name = validate_display_name(display_name)
    if environment is None:
        raise InvalidArgument("environment is required", {"api_key.environment": "LIVE or TEST"})
    kind = key_type or KeyType.SECRET
    return KeySettings(
        display_name=name,
        key_type=kind,
        environment=environment,
        scopes=validate_scopes(scopes, held=held, creator_role=creator_role, known=known, key_type=kind),
        restrictions=validate_restrictions(
            restrictions, publishable=kind is KeyType.PUBLISHABLE, organization_id=organization_id
        ),
        expire_time=validate_new_expiry(expire_time, now),
        labels=validate_labels(labels),
    )
