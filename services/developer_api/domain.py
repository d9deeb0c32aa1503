"""The rules of API keys, without I/O: names, scopes, expiry, rotation, restrictions, state.

Everything here takes plain values and the current time, and raises ``mesh.errors``
exceptions with field violations named after the request fields (``api_key.scopes`` …).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from mesh.access import AccessTable, Role
from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mesh.kit import ids
from mesh.kit.names import ResourceName
from mesh.kit.validation import Violations, text_problem
from services.developer_api.restrictions import Restrictions, validate_restrictions
from vocelio.developer_api.v1 import api_key_pb2, api_usage_pb2

KEYS = ResourceName.for_message(api_key_pb2.ApiKey)
LOGS = ResourceName.for_message(api_usage_pb2.ApiRequestLog)
KEY_ID_PREFIX = "k"
# "…/api_keys/-": every key of the organisation (ListApiKeyUsage).
EVERY = "-"
MAX_SCOPES = 100
MAX_ACTIVE_KEYS_PER_ORGANIZATION = 100
MAX_DISPLAY_NAME = 100
MAX_REVOKE_REASON = 500
MAX_LABELS = 64
MIN_LIFETIME = datetime.timedelta(hours=1)
MAX_LIFETIME = datetime.timedelta(days=365)
DEFAULT_OVERLAP = datetime.timedelta(hours=24)
MAX_OVERLAP = datetime.timedelta(days=7)
# An idempotent create or rotate answers with the same secret for this long (the kit's
# request_id window), then forgets it.
SEALED_SECRET_WINDOW = datetime.timedelta(hours=24)
# last_used_time is kept to the minute, so a busy key costs at most one write a minute.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)

# Permissions a PUBLISHABLE key (one that ships to browsers and apps) may hold: starting
# and following web calls with the organisation's agents and voices, nothing that reads
# or changes the organisation's configuration.
CLIENT_SAFE_SCOPES = frozenset(
    {"calls.create", "calls.get", "calls.hangup", "agents.get", "voices.get", "voices.list", "voices.preview"}
)

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_T = TypeVar("_T")


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
    """A generated key id, ``k_`` + 16 base32 characters (the kit's generated-id form)."""
    return ids.new_id(KEY_ID_PREFIX)


def key_name(organization_id: str, key_id: str) -> str:
    """The resource name of a key, ``organizations/{organization}/api_keys/{api_key}``."""
    return KEYS.format(organization=organization_id, api_key=key_id)


def log_name(organization_id: str, log_id: str) -> str:
    """The resource name of a request log entry."""
    return LOGS.format(organization=organization_id, api_request_log=log_id)


def parse_key_name(name: str, field: str = "name") -> tuple[str, str]:
    """The organisation id and key id in ``organizations/{organization}/api_keys/{api_key}``.

    Raises:
        InvalidArgument: not a key name (``organizations/-`` is never accepted here).

    """
    parsed = KEYS.parse(name, field=field)
    return parsed.organization, parsed[KEYS.id_variable]


def parse_usage_parent(parent: str) -> tuple[str, str | None]:
    """The organisation and key of a ListApiKeyUsage parent; ``None`` for ``…/api_keys/-`` (every key).

    Raises:
        InvalidArgument: neither a key name nor ``organizations/{organization}/api_keys/-``.

    """
    every = f"/{KEYS.collection}/{EVERY}"
    if parent.endswith(every):
        scope = KEYS.parse_parent(parent.removesuffix(every), allow_wildcard=False)
        return scope.organization, None
    return parse_key_name(parent, "parent")


def validate_key_id(key_id: str) -> str:
    """A caller-chosen key id (the kit's id rule), or a generated one when empty.

    Raises:
        InvalidArgument: the chosen id breaks the rule.

    """
    return ids.chosen_or_new(key_id, KEY_ID_PREFIX, field="api_key_id")


def validate_display_name(value: str, field: str = "api_key.display_name") -> str:
    """A display name, stripped: 1 to 100 characters, no control characters (the kit's text rule).

    Raises:
        InvalidArgument: empty, too long, or containing control characters.

    """
    name = value.strip()
    if (problem := text_problem(name, limit=MAX_DISPLAY_NAME, required=True)) is not None:
        raise InvalidArgument(f"{field} {problem}", {field: problem})
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


def narrowed_scopes(
    current: Iterable[str],
    requested: Iterable[str],
    *,
    known: frozenset[str],
    held: frozenset[str] | None = None,
    may_add: bool = False,
) -> tuple[str, ...]:
    """New scopes for an existing key: only fewer, unless the updater may loosen the key.

    With ``may_add`` (see :func:`may_loosen`), scopes may be added that the updater holds
    (``held``) themselves.

    Raises:
        InvalidArgument: empty, unknown, or adding a scope without ``may_add``.
        PermissionDenied: adding a scope beyond the updater's own permissions.

    """
    field = "api_key.scopes"
    scopes = tuple(sorted({s.strip() for s in requested if s.strip()}))
    if not scopes:
        raise InvalidArgument("an API key needs at least one scope; revoke it instead", {field: "at least one"})
    existing = set(current)
    if "*" in scopes and "*" not in existing:
        raise InvalidArgument("* is for keys a SUPER_ADMIN creates", {field: "may not add *"})
    if "*" in scopes:
        return ("*",)
    unknown = [s for s in scopes if s not in known]
    if unknown:
        raise InvalidArgument(f"unknown scopes: {', '.join(unknown)}", {field: "must be permissions of the API"})
    added = [s for s in scopes if s not in existing and "*" not in existing]
    if added and not may_add:
        raise PermissionDenied(LOOSEN_DENIED.format(what=f"add scopes ({', '.join(added)})"))
    if added and held is not None and "*" not in held:
        beyond = [s for s in added if s not in held]
        if beyond:
            raise PermissionDenied(f"scopes exceed your own permissions: {', '.join(beyond)}")
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
    expire_time: datetime.datetime | None,
    now: datetime.datetime,
    field: str = "api_key.expire_time",
    *,
    max_lifetime: datetime.timedelta = MAX_LIFETIME,
) -> datetime.datetime:
    """The expiry of a new key: between 1 hour and the maximum lifetime ahead; unset means the maximum.

    Every key expires: the maximum lifetime is ``VOCELIO_API_KEY_MAX_LIFETIME_DAYS`` (365 days
    unless configured).

    Raises:
        InvalidArgument: in the past, too soon or too far.

    """
    if expire_time is None:
        return now + max_lifetime
    if expire_time < now + MIN_LIFETIME:
        raise InvalidArgument("expire_time must be at least 1 hour ahead", {field: "at least 1 hour in the future"})
    if expire_time > now + max_lifetime:
        days = max_lifetime.days
        raise InvalidArgument(f"expire_time must be within {days} days", {field: f"at most {days} days in the future"})
    return expire_time


def brought_forward_expiry(
    current: datetime.datetime | None,
    requested: datetime.datetime | None,
    now: datetime.datetime,
    *,
    max_lifetime: datetime.timedelta = MAX_LIFETIME,
    may_extend: bool = False,
) -> datetime.datetime:
    """A new expiry for an existing key: in the future, within the maximum lifetime from now.

    Later than the current expiry only with ``may_extend`` (the updater could create the key
    as it would become, see :func:`require_authority_to_loosen`).

    Raises:
        InvalidArgument: unset, in the past, or beyond the maximum lifetime.
        PermissionDenied: later than the current expiry without ``may_extend``.

    """
    field = "api_key.expire_time"
    if requested is None:
        raise InvalidArgument("expire_time can be changed, not removed: every key expires", {field: "required"})
    if requested <= now:
        raise InvalidArgument("expire_time must be in the future; revoke the key instead", {field: "in the future"})
    if (current is None or requested > current) and requested > now + max_lifetime:
        days = max_lifetime.days
        raise InvalidArgument(f"expire_time must be within {days} days", {field: f"at most {days} days in the future"})
    if current is not None and requested > current and not may_extend:
        raise PermissionDenied(LOOSEN_DENIED.format(what="push the expiry back"))
    return requested


LOOSEN_DENIED = (
    "only someone who may create this key as it would become (api_keys.create and every scope it holds, "
    "not an API key) may {what}"
)


def may_loosen(*, is_api_key: bool, held: frozenset[str], scopes: Iterable[str]) -> bool:
    """Whether an updater may remove or widen a key's limits (could they create the key without them).

    They need ``api_keys.create`` and every scope the key will hold; an API key never loosens
    (a key cannot vouch for limits beyond its own).
    """
    if is_api_key:
        return False
    if "*" in held:
        return True
    return "api_keys.create" in held and all(s in held for s in scopes)


def require_authority_to_loosen(allowed: bool, what: str) -> None:
    """Refuse a loosening change without the authority to make it.

    Raises:
        PermissionDenied: naming what was refused.

    """
    if not allowed:
        raise PermissionDenied(LOOSEN_DENIED.format(what=what))


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


_USER = re.compile(r"^users/[A-Za-z0-9_-]{1,64}$")
_ORGANIZATION_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def validate_owner(value: str, field: str) -> str:
    """A key owner, ``users/{user}``.

    Raises:
        InvalidArgument: not a user's name.

    """
    if not _USER.match(value):
        raise InvalidArgument(f"{field} must name a user, users/{{user}}", {field: "a user, like users/u_ada"})
    return value


def validate_organization_id(value: str, field: str = "organization_id") -> str:
    """An organisation id (not a name).

    Raises:
        InvalidArgument: empty or malformed.

    """
    if not _ORGANIZATION_ID.match(value):
        raise InvalidArgument(f"{field} must be an organisation id", {field: "an organisation id, like acme"})
    return value


def validate_revoke_reason(reason: str) -> str:
    """A revocation reason, stripped: at most 500 characters, no control characters.

    Raises:
        InvalidArgument: too long, or containing control characters.

    """
    reason = reason.strip()
    if (problem := text_problem(reason, limit=MAX_REVOKE_REASON)) is not None:
        raise InvalidArgument(f"reason {problem}", {"reason": problem})
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
    max_lifetime: datetime.timedelta = MAX_LIFETIME,
) -> KeySettings:
    """Everything a new key's creator chose, validated; see the individual rules.

    Every malformed field is reported at once, in one INVALID_ARGUMENT.

    Raises:
        InvalidArgument: malformed fields, each named.
        PermissionDenied: scopes beyond the creator's permissions.

    """
    violations = Violations()
    kind = key_type or KeyType.SECRET

    def checked(rule: Callable[[], _T]) -> _T | None:
        try:
            return rule()
        except InvalidArgument as error:
            violations.update(error.field_violations)
            return None

    name = checked(lambda: validate_display_name(display_name))
    violations.check(environment is not None, "api_key.environment", "is required: LIVE or TEST")
    chosen_scopes = checked(
        lambda: validate_scopes(scopes, held=held, creator_role=creator_role, known=known, key_type=kind)
    )
    chosen_restrictions = checked(
        lambda: validate_restrictions(
            restrictions, publishable=kind is KeyType.PUBLISHABLE, organization_id=organization_id
        )
    )
    expiry = checked(lambda: validate_new_expiry(expire_time, now, max_lifetime=max_lifetime))
    chosen_labels = checked(lambda: validate_labels(labels))
    violations.raise_if_any()
    # Every rule passed (raise_if_any would have raised), so each value is set.
    assert name is not None
    assert environment is not None
    assert chosen_scopes is not None
    assert chosen_restrictions is not None
    assert chosen_labels is not None
    assert expiry is not None
    return KeySettings(
        display_name=name,
        key_type=kind,
        environment=environment,
        scopes=chosen_scopes,
        restrictions=chosen_restrictions,
        expire_time=expiry,
        labels=chosen_labels,
    )
