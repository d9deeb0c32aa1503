"""List requests: page sizes, opaque page tokens and a small AIP-160 filter language.

Filters are conjunctions of comparisons: ``state = ACTIVE AND environment = LIVE``,
``scopes:calls.create``, ``labels.system = "crm"``, ``http_status >= 400``,
``request_time >= "2026-01-01T00:00:00Z"``. ``AND`` is the only connective; values with
spaces, colons or quotes are written in double quotes. Each list names the fields and
operators it accepts, and anything else is INVALID_ARGUMENT.

A page token carries the position after the last item and a fingerprint of the query,
so a token used with another filter is refused rather than silently misread.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mesh.errors import InvalidArgument

EQUALITY = frozenset({"=", "!="})
ORDERING = frozenset({"=", "!=", "<", "<=", ">", ">="})
HAS = frozenset({":"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op><=|>=|!=|=|<|>|:)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<word>[A-Za-z0-9_.\-/*+]+)
    )""",
    re.VERBOSE,
)
_MAX_FILTER = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One comparison of a filter: ``field op value``."""

    field: str
    op: str
    value: str


def parse_filter(text: str, allowed: Mapping[str, frozenset[str]]) -> list[Condition]:
    """The conditions of a filter.

    Args:
        text: the filter; empty means no condition.
        allowed: the operators each field accepts; a key ending in ``.`` (``"labels."``)
            accepts any field under it.

    Raises:
        InvalidArgument: a syntax error, an unknown field or an operator the field does not take.

    """
    if len(text) > _MAX_FILTER:
        raise InvalidArgument("filter too long", {"filter": f"at most {_MAX_FILTER} characters"})
    tokens = _tokens(text)
    conditions: list[Condition] = []
    position = 0
    while position < len(tokens):
        if conditions:
            if tokens[position] != ("word", "AND"):
                raise _syntax("conditions are joined with AND (OR and NOT are not supported)")
            position += 1
        if position + 3 > len(tokens):
            raise _syntax("expected a comparison like field = value")
        (field_kind, field), (op_kind, op), (value_kind, value) = tokens[position : position + 3]
        if field_kind != "word" or op_kind != "op" or value_kind not in ("word", "string"):
            raise _syntax("expected a comparison like field = value")
        operators = allowed.get(field)
        if operators is None:
            operators = next(
                (ops for name, ops in allowed.items() if name.endswith(".") and field.startswith(name)), None
            )
        if operators is None:
            raise InvalidArgument(f"cannot filter on {field}", {"filter": f"fields: {', '.join(sorted(allowed))}"})
        if op not in operators:
            raise InvalidArgument(
                f"{field} does not take {op}", {"filter": f"{field} takes {' '.join(sorted(operators))}"}
            )
        conditions.append(Condition(field, op, value))
        position += 3
    return conditions


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise _syntax(f"unexpected character at position {position}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _syntax(why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid filter: {why}", {"filter": why})


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The page size to use: ``default`` for 0, at most ``maximum``.

    Raises:
        InvalidArgument: negative.

    """
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", {"page_size": "0 or more"})
    return default if requested == 0 else min(requested, maximum)


def query_fingerprint(*parts: Any) -> str:
    """A short digest of what a list was asked for, to tie page tokens to their query."""
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def encode_page_token(position: Sequence[Any], fingerprint: str) -> str:
    """An opaque token for the page after ``position``."""
    raw = json.dumps({"p": list(position), "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> list[Any] | None:
    """The position a token carries, or ``None`` for the first page.

    Raises:
        InvalidArgument: a malformed token, or one issued for another query.

    """
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = data["p"]
        issued_for = data["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("invalid page_token", {"page_token": "use a next_page_token as returned"}) from None
    if issued_for != fingerprint or not isinstance(position, list):
        raise InvalidArgument(
            "page_token belongs to a different query", {"page_token": "repeat the query that returned it"}
        )
    return position
