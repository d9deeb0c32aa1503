"""List filters (AIP-160, the small subset the identity lists need) and page tokens."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from mesh.errors import InvalidArgument

_TERM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|!=|=|>|<|:)\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')
_AND = re.compile(r"AND\s+")

EQUALITY = frozenset({"=", "!="})
ORDERING = frozenset({"=", ">=", "<=", ">", "<"})
HAS = frozenset({":", "="})


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One ``field op value`` term of a filter."""

    field: str
    op: str
    value: str


MAX_FILTER_LENGTH = 2000
# Values go into SQL parameters: PostgreSQL refuses NUL in text, and lone surrogates do not encode.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def parse_filter(text: str, fields: Mapping[str, frozenset[str]]) -> list[Condition]:
    """Parse ``a = x AND b >= "y"`` into conditions.

    Args:
        text: the filter; empty means no condition.
        fields: the fields that may be filtered on, each with the operators it accepts.

    Raises:
        InvalidArgument: the filter does not parse, is too long, names an unknown field,
            uses an operator the field does not accept or holds an unusable value.

    """
    if len(text) > MAX_FILTER_LENGTH:
        raise _bad(f"at most {MAX_FILTER_LENGTH} characters")
    conditions: list[Condition] = []
    position = 0
    text = text.strip()
    while position < len(text):
        if conditions:
            joiner = _AND.match(text, position)
            if joiner is None:
                raise _bad(f"expected AND at position {position}")
            position = joiner.end()
        match = _TERM.match(text, position)
        if match is None:
            raise _bad(f"expected `field operator value` at position {position}")
        field, op, raw = match.groups()
        if field not in fields:
            raise _bad(f"cannot filter on {field!r}; use one of {', '.join(sorted(fields))}")
        if op not in fields[field]:
            raise _bad(f"{field} does not support the operator {op}")
        conditions.append(Condition(field, op, _value(raw, field)))
        position = match.end()
    return conditions


def _value(raw: str, field: str) -> str:
    value = raw
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            raise _bad(f"the value of {field} is not a valid quoted string") from None
    if _UNSTORABLE.search(value):
        raise _bad(f"the value of {field} holds control characters")
    return value


def parse_time(value: str, field: str) -> dt.datetime:
    """An RFC 3339 instant from a filter value.

    Raises:
        InvalidArgument: not an RFC 3339 instant with a zone.

    """
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise _bad(f"{field} needs a time zone (Z or ±hh:mm)")
        return moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise _bad(f"{field} needs an RFC 3339 time such as 2026-01-01T00:00:00Z") from None


def parse_bool(value: str, field: str) -> bool:
    """A boolean filter value.

    Raises:
        InvalidArgument: not ``true`` or ``false``.

    """
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise _bad(f"{field} is true or false")
    return lowered == "true"


def _bad(problem: str) -> InvalidArgument:
    return InvalidArgument(f"the filter is not valid: {problem}", {"filter": problem})


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The page size to use: ``default`` for 0, at most ``maximum``.

    Raises:
        InvalidArgument: a negative size.

    """
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", {"page_size": "must not be negative"})
    return default if requested == 0 else min(requested, maximum)


def encode_page_token(position: Mapping[str, Any]) -> str:
    """An opaque page token holding a keyset position."""
    raw = json.dumps(dict(position), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, fields: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any] | None:
    """The keyset position in a page token (``None`` for an empty token).

    Args:
        token: the page token from the request.
        fields: each key the position must hold, with the function that reads its value
            (``str``, ``int``, :func:`token_time`); a value it refuses makes the token invalid.

    Raises:
        InvalidArgument: the token was not made by :func:`encode_page_token` with these keys.

    """
    if not token:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(position, dict) or set(position) != set(fields):
            raise ValueError("not a position")
        return {key: read(position[key]) for key, read in fields.items()}
    except (binascii.Error, ValueError, TypeError, OverflowError, UnicodeDecodeError):
        raise InvalidArgument(
            "page_token is not valid", {"page_token": "use a next_page_token from a response"}
        ) from None


def token_time(value: Any) -> dt.datetime:
    """A timezone-aware instant stored in a page token.

    Raises:
        ValueError: not an ISO 8601 instant with a zone.

    """
    moment = dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError("naive time in a page token")
    return moment.astimezone(dt.UTC)


def token_text(value: Any) -> str:
    """A string stored in a page token.

    Raises:
        ValueError: not a string, or one that cannot be a query parameter.

    """
    if not isinstance(value, str) or _UNSTORABLE.search(value):
        raise ValueError("not a string")
    return value


def token_int(value: Any) -> int:
    """An integer stored in a page token.

    Raises:
        ValueError: not an integer.

    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value
