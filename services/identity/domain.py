"""Account rules without I/O.

E-mail addresses, the password policy, the stored sign-in failure facts, refresh-token
families, the choice of organisation for a token, revocation cut-offs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Sequence

from mesh.errors import InvalidArgument

MAX_EMAIL_LENGTH = 254
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
MAX_DISPLAY_NAME_LENGTH = 100

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")

# The most common passwords that are long enough to pass the length rule.
_COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "password1234",
        "password12345",
        "password123456",
        "passwordpassword",
        "qwertyuiop12",
        "qwertyuiopasdf",
        "qwertyuiopasdfghjkl",
        "iloveyou1234",
        "abcdefghijkl",
        "abc123abc123",
        "letmein12345",
        "welcome12345",
        "administrator",
        "changeme1234",
        "000000000000",
        "111111111111",
    }
)


# The principals a token can name (its ``sub``); API keys live under their organisation.
_PRINCIPAL_KINDS = (
    (re.compile(r"^users/[^/]+$"), "USER"),
    (re.compile(r"^organizations/[^/]+/api_keys/[^/]+$"), "API_KEY"),
    (re.compile(r"^services/[^/]+$"), "SERVICE"),
)


def principal_kind(subject: str) -> str:
    """``USER``, ``API_KEY`` or ``SERVICE`` for a principal name, ``ANONYMOUS`` for anything else."""
    for pattern, kind in _PRINCIPAL_KINDS:
        if pattern.match(subject):
            return kind
    return "ANONYMOUS"


def derived_request_id(*parts: str) -> str:
    """A UUID4-form request id (AIP-155) that is the same every time for the same parts.

    Identity sends one when it calls another service on behalf of a request that may be
    retried (sign-up provisions an organisation): the retry must carry the same id.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def normalise_email(raw: str, *, field: str = "email") -> str:
    """An e-mail address trimmed and lower-cased, after checking its shape.

    Raises:
        InvalidArgument: empty, too long, or not shaped like ``local@domain.tld``.

    """
    email = raw.strip().lower()
    if not email:
        raise InvalidArgument("an e-mail address is required", {field: "required"})
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidArgument("the e-mail address is too long", {field: f"at most {MAX_EMAIL_LENGTH} characters"})
    if not _EMAIL.match(email):
        raise InvalidArgument("the e-mail address is not valid", {field: "must look like name@example.com"})
    return email


def normalise_password(password: str) -> str:
    """The password in Unicode NFKC form, the form that is hashed (NIST SP 800-63B §5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


def check_password_policy(password: str, email: str, *, field: str = "password") -> None:
    """Check a new password against the policy.

    The policy: 12 to 128 characters, not the account's e-mail address (or its local
    part), not one character repeated, not one of the most common long passwords.

    Raises:
        InvalidArgument: the password breaks a rule; the message says which.

    """
    normalised = normalise_password(password)
    problem = _password_problem(normalised, email)
    if problem:
        raise InvalidArgument(f"the password is too weak: {problem}", {field: problem})


def _password_problem(password: str, email: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters"
    lowered = password.strip().lower()
    local_part = email.split("@", 1)[0]
    if email and lowered in (email, local_part):
        return "must not be the e-mail address"
    if len(set(password)) == 1:
        return "must not repeat a single character"
    if lowered in _COMMON_PASSWORDS:
        return "is one of the most common passwords"
    return ""


def check_display_name(display_name: str, *, field: str = "display_name") -> str:
    """A display name trimmed, 1 to 100 characters.

    Raises:
        InvalidArgument: empty or too long.

    """
    name = display_name.strip()
    if not name:
        raise InvalidArgument("a display name is required", {field: "required"})
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise InvalidArgument("the display name is too long", {field: f"at most {MAX_DISPLAY_NAME_LENGTH} characters"})
    return name


class UserState(enum.StrEnum):
    """A user account's state (``vocelio.identity.v1.UserState`` without its prefix)."""

    ACTIVE = "ACTIVE"
    LOCKED = "LOCKED"
    DISABLED = "DISABLED"


@dataclasses.dataclass(frozen=True, slots=True)
class Lockout:
    """The sign-in failure facts stored on one account, for administrators to see.

    Failed sign-ins no longer lock an account (the per-account delay of
    ``ratelimit.SignInThrottle`` replaced the lock, so that an outsider cannot lock an
    owner out); a LOCKED state and ``locked_until`` remain only on rows written before.

    Attributes:
        state: the stored state.
        failed_count: failed password checks since the last success.
        lock_count: locks since the last successful sign-in (rows written before the delay).
        locked_until: when a stored lock lifts, while LOCKED.

    """

    state: UserState
    failed_count: int = 0
    lock_count: int = 0
    locked_until: dt.datetime | None = None

    def effective(self, now: dt.datetime) -> Lockout:
        """The facts as of ``now``: a stored lock whose time has passed has lifted (with a clean count)."""
        if self.state is UserState.LOCKED and (self.locked_until is None or self.locked_until <= now):
            return dataclasses.replace(self, state=UserState.ACTIVE, failed_count=0, locked_until=None)
        return self

    def is_locked(self, now: dt.datetime) -> bool:
        """Whether a stored lock is in force at ``now``."""
        return self.effective(now).state is UserState.LOCKED

    def after_failure(self, now: dt.datetime) -> Lockout:
        """The facts after one more failed password check at ``now``: one more failure counted (none when DISABLED)."""
        current = self.effective(now)
        if current.state is UserState.DISABLED:
            return current
        return dataclasses.replace(current, failed_count=current.failed_count + 1)

    def after_success(self) -> Lockout:
        """The facts after a successful sign-in: counters back to zero (a stored lock lifts)."""
        return Lockout(state=self.state if self.state is UserState.DISABLED else UserState.ACTIVE)

    def unlocked(self) -> Lockout:
        """The facts after an administrator lifts a lock or delay: active, no failures counted."""
        state = self.state if self.state is UserState.DISABLED else UserState.ACTIVE
        return Lockout(state=state, lock_count=self.lock_count)


def rfc3339(moment: dt.datetime) -> str:
    """An instant as RFC 3339 UTC text, whole seconds (``2026-01-02T03:04:05Z``)."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class RefreshVerdict(enum.Enum):
    """What a presented refresh token is worth."""

    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    SESSION_ENDED = "session_ended"
    REUSED = "reused"


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshFacts:
    """The stored facts about a presented refresh token and its family.

    Attributes:
        used: the token was exchanged before (it has a successor).
        token_expires: when the token itself expires (the session's end).
        session_revoked: the family was revoked (logout, reuse, removal …).
        session_expires: the absolute end of the session.

    """

    used: bool
    token_expires: dt.datetime
    session_revoked: bool
    session_expires: dt.datetime


def judge_refresh(facts: RefreshFacts | None, now: dt.datetime) -> RefreshVerdict:
    """The verdict on a presented refresh token.

    Reuse wins over everything but an already-ended session: a spent token presented
    again means two parties hold the family, so the family must end. A token of an
    ended session is simply invalid (nothing left to revoke).
    """
    if facts is None:
        return RefreshVerdict.UNKNOWN
    if facts.session_revoked:
        return RefreshVerdict.SESSION_ENDED
    if facts.used:
        return RefreshVerdict.REUSED
    if facts.token_expires <= now or facts.session_expires <= now:
        return RefreshVerdict.EXPIRED
    return RefreshVerdict.VALID


@dataclasses.dataclass(frozen=True, slots=True)
class Membership:
    """One of a user's active memberships, as team_hub reports it.

    Attributes:
        organization_id: the organisation.
        role: the role name (``"ADMIN"`` …).
        member: the membership resource name (``members/…``).
        organization_display_name: the organisation's name.

    """

    organization_id: str
    role: str
    member: str = ""
    organization_display_name: str = ""


class NoMembership(Exception):
    """The user has no active membership that a token could be issued for."""


def choose_membership(memberships: Sequence[Membership], requested: str, home: str) -> Membership:
    """The membership a token is issued for.

    The requested organisation if any; otherwise the home organisation; otherwise the
    oldest membership (team_hub lists the oldest first).

    Raises:
        NoMembership: the user is not an active member of the requested organisation,
            or of any organisation.

    """
    by_org = {m.organization_id: m for m in memberships}
    if requested:
        if requested not in by_org:
            raise NoMembership(f"the user is not an active member of organisation {requested}")
        return by_org[requested]
    if home in by_org:
        return by_org[home]
    if memberships:
        return memberships[0]
    raise NoMembership("the user is not an active member of any organisation")


def principal_cutoff(now: dt.datetime) -> dt.datetime:
    """The least ``issued_before`` of a principal revocation written at ``now``: the next whole second.

    Tokens carry ``iat`` in whole seconds and a principal revocation revokes the tokens
    whose ``iat`` is before the cut-off, so a cut-off after the current second revokes
    every token issued in it (even at its very first microsecond); tokens issued
    afterwards in that second are stamped with the cut-off as their ``iat`` (see
    :func:`issue_instant`). The log raises it further so that cut-offs strictly increase
    (``store_log.next_cutoff``).
    """
    return now.replace(microsecond=0) + dt.timedelta(seconds=1)


def issue_instant(now: dt.datetime, latest_cutoff: dt.datetime | None) -> int:
    """The ``iat`` of a token issued at ``now`` to a principal whose latest revocation cut-off is given.

    Normally ``now`` in whole seconds; when a revocation of this principal was written in
    the current second, its cut-off (less than a second ahead), so the new token is not
    caught by it.
    """
    instant = int(now.timestamp())
    if latest_cutoff is not None:
        instant = max(instant, int(latest_cutoff.timestamp()))
    return instant


_SECRET_KEY = re.compile(r"password|secret|token|credential|private", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_details(details: dict[str, str]) -> dict[str, str]:
    """Audit details with secret-looking entries blanked, values capped at 1 KiB.

    Defence in depth: callers never put secrets in details, and should one slip in under
    a telling name it is not stored.
    """
    cleaned: dict[str, str] = {}
    for key, value in list(details.items())[:50]:
        cleaned[key[:64]] = REDACTED if _SECRET_KEY.search(key) else value[:1024]
    return cleaned
