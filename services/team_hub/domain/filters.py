"""List filters: the AIP-160 subset team hub understands.

A filter is comparisons joined by ``AND``: ``state = SUSPENDED AND plan = ENTERPRISE``,
``role >= MANAGER``, ``teams : "teams/abc"``, ``labels.segment = "smb"``. Values are bare
words or double-quoted strings; enum values may be written with or without their prefix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from mesh.access import Role
from mesh.errors import InvalidArgument

EQUALITY = frozenset({"=", "!="})
ORDERED = frozenset({"=", "!=", "<", "<=", ">", ">="})
HAS = frozenset({":"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<word>[^\s"=<>!:()]+)
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_-]+)?$")
_FIELD_NAME = "filter"


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One comparison: ``field op value``."""

    field: str
    op: str
    value: str


def _invalid(why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid filter: {why}", {_FIELD_NAME: why})


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # pragma: no cover - the pattern matches any non-space character
            raise _invalid("unreadable")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        if kind == "other":
            raise _invalid(f"unexpected {value!r}; only comparisons joined by AND are supported")
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
    return tokens


def parse(text: str, allowed: Mapping[str, frozenset[str]]) -> list[Condition]:
    """The comparisons of a filter, checked against the fields a list allows.

    Args:
        text: the filter (empty: no condition).
        allowed: each field and the operators it supports; a key ending in ``.*``
            (``labels.*``) allows any key under that prefix.

    Raises:
        InvalidArgument: a syntax error, an unknown field or an unsupported operator.

    """
    tokens = _tokens(text)
    conditions: list[Condition] = []
    index = 0
    while index < len(tokens):
        if conditions:
            if tokens[index] != ("word", "AND"):
                raise _invalid("join comparisons with AND (OR, NOT and parentheses are not supported)")
            index += 1
        triple = tokens[index : index + 3]
        if len(triple) < 3 or triple[0][0] != "word" or triple[1][0] != "op" or triple[2][0] not in ("word", "string"):
            raise _invalid("expected `field operator value`")
        field, op, value = triple[0][1], triple[1][1], triple[2][1]
        if not _FIELD.match(field):
            raise _invalid(f"bad field name {field!r}")
        operators = allowed.get(field)
        if operators is None and "." in field:
            operators = allowed.get(field.split(".", 1)[0] + ".*")
        if operators is None:
            raise _invalid(f"unknown field {field!r}; filterable: {', '.join(sorted(allowed))}")
        if op not in operators:
            raise _invalid(f"{field} supports {' '.join(sorted(operators))}")
        conditions.append(Condition(field, op, value))
        index += 3
    return conditions


def enum_value(value: str, choices: frozenset[str], prefix: str, field: str) -> str:
    """An enum value's name without prefix (``PENDING`` from ``INVITATION_STATE_PENDING``).

    Raises:
        InvalidArgument: not one of ``choices``.

    """
    name = value.upper().removeprefix(prefix)
    if name not in choices:
        raise _invalid(f"{field} is one of {', '.join(sorted(choices))}")
    return name


def role_value(value: str) -> Role:
    """A role from a filter value (``MANAGER`` or ``ROLE_MANAGER``).

    Raises:
        InvalidArgument: not a role.

    """
    try:
        return Role.parse(value)
    except ValueError:
        raise _invalid("role is one of GUEST, VIEWER, AGENT, MANAGER, ADMIN, SUPER_ADMIN") from None


def bool_value(value: str, field: str) -> bool:
    """``true`` or ``false``.

    Raises:
        InvalidArgument: anything else.

    """
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise _invalid(f"{field} is true or false")
    return lowered == "true"
