"""One AIP-160 filter parser for every List, driven by a per-list field schema.

Supported subset::

    expression  := factor ("AND" factor)*
    factor      := term ("OR" term)*              (OR binds tighter than AND, as in AIP-160)
    term        := ["NOT" | "-"] (restriction | "(" expression ")")
    restriction := FIELD OPERATOR VALUE | FIELD ":" "*" | "labels" ":" KEY
    OPERATOR    := "=" | "!=" | "<" | ">" | "<=" | ">=" | ":"
    VALUE       := "quoted string" | number | true | false | ENUM_NAME | *

Each list declares its fields (:class:`FilterField`): a string, integer, boolean,
timestamp (compared with a quoted RFC 3339 time) or enum column, or a labels map
(``labels.team = "sales"``, ``labels:team`` for "has the key"), or a repeated value held in
another table (:meth:`FilterField.has`: ``teams : "organizations/acme/teams/sales"``). An enum
whose stored values are ordered (a role ladder) may also be compared with ``<``, ``>``,
``<=`` and ``>=``. A field name may contain dots (``members.member``). A string compared with
a value ending in ``*`` matches by prefix. ``field:*`` means "is set". The filter compiles to
one SQLAlchemy clause; every error is INVALID_ARGUMENT naming the ``filter`` field.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy import and_, not_, or_
from sqlalchemy.sql.elements import ColumnElement

from mesh.errors import InvalidArgument

FILTER_MAX = 1_000
MAX_TERMS = 50
MAX_DEPTH = 10

LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<operator><=|>=|!=|=|<|>|:)
      | (?P<open>\()
      | (?P<close>\))
      | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z_]))
      | (?P<minus>-)
      | (?P<star>\*)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.-]*)
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_ORDERING = {"<", ">", "<=", ">="}
# Values become SQL parameters: PostgreSQL refuses NUL in text, and lone surrogates do not encode.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class Kind(enum.Enum):
    """What kind of values a filterable field holds."""

    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    ENUM = "enum"
    LABELS = "labels"
    HAS = "has"


@dataclasses.dataclass(frozen=True, slots=True)
class FilterField:
    """One filterable field of a list.

    Attributes:
        kind: the kind of its values.
        column: the column (or SQL expression) it reads.
        enum_values: for an enum, each accepted name → the stored value.
        enum_prefix: a prefix callers may put before enum names (``AGENT_STATE_``).
        ordered: for an enum, its stored values are ordered, so ``<``, ``>``, ``<=`` and
            ``>=`` compare them (``role >= MANAGER``).
        holds: the condition "the repeated field holds this value": for :attr:`Kind.HAS` (values
            kept in another table), and for a column field ``field:value`` (``scopes:calls.get``);
            without it ``field:`` takes only ``*`` (is set).
        contains: for a string, ``field : "text"`` matches values containing ``text``
            (``email : "@example.com"``); otherwise ``:`` takes only ``*``.

    """

    kind: Kind
    column: Any
    enum_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    enum_prefix: str = ""
    ordered: bool = False
    holds: Callable[[str], ColumnElement[bool]] | None = None
    contains: bool = False

    @classmethod
    def enum(cls, column: Any, values: Mapping[str, Any], prefix: str = "", *, ordered: bool = False) -> FilterField:
        """An enum field: ``values`` maps names (``PUBLISHED``) to stored values."""
        return cls(Kind.ENUM, column, dict(values), prefix, ordered)

    @classmethod
    def has(cls, holds: Callable[[str], ColumnElement[bool]]) -> FilterField:
        """A repeated field kept in another table: ``field : "value"`` (or ``=``) is ``holds(value)``."""
        return cls(Kind.HAS, None, holds=holds)


FilterSchema = Mapping[str, FilterField]


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedFilter:
    """A compiled filter.

    Attributes:
        clause: the SQL condition, or ``None`` for an empty filter (everything matches).
        fields: the schema fields the filter names (``{"state", "labels"}``), so a list can
            tell whether the caller asked about a field it otherwise defaults (archived agents).

    """

    clause: ColumnElement[bool] | None
    fields: frozenset[str]


def parse_filter(text: str, schema: FilterSchema, *, field: str = "filter") -> ParsedFilter:
    """Compile a filter against a list's schema.

    Raises:
        InvalidArgument: the filter is malformed, too long or names an unknown field; the
            violation names ``field``.

    """
    if len(text) > FILTER_MAX:
        raise _invalid(f"is longer than {FILTER_MAX} characters", field)
    tokens = list(_tokenize(text, field))
    if not tokens:
        return ParsedFilter(None, frozenset())
    parser = _Parser(tokens, schema, field)
    clause = parser.expression(depth=0)
    if parser.position != len(tokens):
        raise _invalid(f"unexpected {tokens[parser.position].text!r}; join conditions with AND or OR", field)
    return ParsedFilter(clause, frozenset(parser.fields))


def compile_filter(text: str, schema: FilterSchema, *, field: str = "filter") -> ColumnElement[bool] | None:
    """The SQL condition of a filter, or ``None`` for an empty filter (see :func:`parse_filter`).

    Raises:
        InvalidArgument: the filter is malformed, too long or names an unknown field.

    """
    return parse_filter(text, schema, field=field).clause


class _Parser:
    def __init__(self, tokens: list[_Token], schema: FilterSchema, field: str) -> None:
        self.tokens = tokens
        self.schema = schema
        self.field = field
        self.position = 0
        self.terms = 0
        self.fields: set[str] = set()

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, what: str) -> _Token:
        token = self.peek()
        if token is None:
            raise _invalid(f"ends early: expected {what}", self.field)
        self.position += 1
        return token

    def at_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text == word

    def expression(self, depth: int) -> ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise _invalid(f"nests parentheses deeper than {MAX_DEPTH}", self.field)
        clauses = [self.factor(depth)]
        while self.at_word("AND"):
            self.position += 1
            clauses.append(self.factor(depth))
        return clauses[0] if len(clauses) == 1 else and_(*clauses)

    def factor(self, depth: int) -> ColumnElement[bool]:
        clauses = [self.term(depth)]
        while self.at_word("OR"):
            self.position += 1
            clauses.append(self.term(depth))
        return clauses[0] if len(clauses) == 1 else or_(*clauses)

    def term(self, depth: int) -> ColumnElement[bool]:
        token = self.peek()
        negate = token is not None and (token.kind == "minus" or (token.kind == "word" and token.text == "NOT"))
        if negate:
            self.position += 1
        token = self.take("a condition")
        if token.kind == "open":
            clause = self.expression(depth + 1)
            if self.take("')'").kind != "close":
                raise _invalid("has an unclosed '('", self.field)
        elif token.kind == "word" and token.text not in ("AND", "OR", "NOT"):
            clause = self.restriction(token.text)
        else:
            raise _invalid(f"expected a condition, found {token.text!r}", self.field)
        return not_(clause) if negate else clause

    def restriction(self, name: str) -> ColumnElement[bool]:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _invalid(f"has more than {MAX_TERMS} conditions", self.field)
        operator = self.take("an operator after " + name)
        if operator.kind != "operator":
            raise _invalid(f"expected an operator after {name}, found {operator.text!r}", self.field)
        value = self.take(f"a value after {name} {operator.text}")
        # A dotted name is a field of its own ("actor.principal") when the schema says so, else a label key.
        head, spec, key = name, self.schema.get(name), ""
        if spec is None:
            head, _, key = name.partition(".")
            spec = self.schema.get(head)
        if spec is None or (key and spec.kind is not Kind.LABELS):
            known = ", ".join(sorted(f"{n}.<key>" if s.kind is Kind.LABELS else n for n, s in self.schema.items()))
            raise _invalid(f"cannot filter on {name!r}; use {known}", self.field)
        self.fields.add(head)
        if spec.kind is Kind.LABELS:
            return self.label(spec, name, key, operator.text, value)
        if spec.kind is Kind.HAS:
            if operator.text not in (":", "=") or value.kind != "string" or spec.holds is None:
                raise _invalid(f'{name} takes : with a quoted value: {name} : "value"', self.field)
            return spec.holds(_string(value, self.field))
        if operator.text == ":":
            if spec.holds is not None and value.kind in ("word", "string"):
                return spec.holds(_string(value, self.field))
            if spec.contains and value.kind == "string":
                return spec.column.contains(_string(value, self.field), autoescape=True)  # type: ignore[no-any-return]
            if value.kind != "star":
                raise _invalid(f"{name}: takes only * (is set); compare values with =", self.field)
            return _is_set(spec)
        return _compare(spec, name, operator.text, value, self.field)

    def label(self, spec: FilterField, name: str, key: str, operator: str, value: _Token) -> ColumnElement[bool]:
        if not key:
            if operator != ":" or value.kind not in ("word", "string"):
                raise _invalid(f'use {name}:KEY (has the label) or {name}.KEY = "value"', self.field)
            key = _string(value, self.field)
            present: ColumnElement[bool] = _label_key_check(spec, key, self.field).is_not(None)
            return present
        entry = _label_key_check(spec, key, self.field)
        if operator == ":" and value.kind == "star":
            has_key: ColumnElement[bool] = entry.is_not(None)
            return has_key
        if operator not in ("=", "!=") or value.kind != "string":
            raise _invalid(f"{name} takes = or != with a quoted string, or :* (has the label)", self.field)
        text = _string(value, self.field)
        return entry == text if operator == "=" else or_(entry.is_(None), entry != text)


def _label_key_check(spec: FilterField, key: str, field: str) -> Any:
    if not LABEL_KEY.fullmatch(key):
        raise _invalid(f"{key!r} is not a label key", field)
    return spec.column[key].as_string()


def _is_set(spec: FilterField) -> ColumnElement[bool]:
    column = spec.column
    if spec.kind is Kind.STRING:
        return and_(column.is_not(None), column != "")
    return column.is_not(None)  # type: ignore[no-any-return]


def _compare(spec: FilterField, name: str, operator: str, token: _Token, field: str) -> ColumnElement[bool]:
    kind = spec.kind
    if operator in _ORDERING and (kind is Kind.BOOLEAN or (kind is Kind.ENUM and not spec.ordered)):
        raise _invalid(f"{name} takes only = and !=", field)
    value: Any
    if kind is Kind.STRING:
        if token.kind != "string":
            raise _invalid(f'{name} is compared with a quoted string: {name} = "text"', field)
        value = _string(token, field)
        if value.endswith("*") and operator in ("=", "!="):
            clause = spec.column.like(_escape_like(value[:-1]) + "%", escape="\\")
            return clause if operator == "=" else not_(clause)  # type: ignore[no-any-return]
    elif kind is Kind.INTEGER:
        if token.kind != "number" or "." in token.text:
            raise _invalid(f"{name} is compared with a whole number", field)
        value = int(token.text)
    elif kind is Kind.BOOLEAN:
        if token.kind != "word" or token.text not in ("true", "false"):
            raise _invalid(f"{name} is compared with true or false", field)
        value = token.text == "true"
    elif kind is Kind.TIMESTAMP:
        value = _timestamp(token, name, field)
    else:
        value = _enum(spec, token, name, field)
    column = spec.column
    match operator:
        case "=":
            return column == value  # type: ignore[no-any-return]
        case "!=":
            return column != value  # type: ignore[no-any-return]
        case "<":
            return column < value  # type: ignore[no-any-return]
        case ">":
            return column > value  # type: ignore[no-any-return]
        case "<=":
            return column <= value  # type: ignore[no-any-return]
        case _:
            return column >= value  # type: ignore[no-any-return]


def _enum(spec: FilterField, token: _Token, name: str, field: str) -> Any:
    if token.kind not in ("word", "string"):
        raise _invalid(f"{name} is compared with one of {', '.join(spec.enum_values)}", field)
    text = _string(token, field) if token.kind == "string" else token.text
    text = text.removeprefix(spec.enum_prefix) if spec.enum_prefix else text
    if text not in spec.enum_values:
        raise _invalid(f"{text!r} is not a {name}; use {', '.join(spec.enum_values)}", field)
    return spec.enum_values[text]


def _timestamp(token: _Token, name: str, field: str) -> datetime.datetime:
    text = _string(token, field) if token.kind == "string" else ""
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
        if moment is not None and moment.tzinfo is not None:
            return moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):  # OverflowError: a time that leaves the calendar once moved to UTC
        pass
    raise _invalid(f'{name} is compared with a quoted RFC 3339 time: {name} > "2026-01-01T00:00:00Z"', field)


def _string(token: _Token, field: str) -> str:
    if token.kind != "string":
        return token.text
    try:
        value = json.loads(token.text)
    except json.JSONDecodeError:
        raise _invalid(f"{token.text} is not a valid string", field) from None
    assert isinstance(value, str)
    if _UNSTORABLE.search(value):
        raise _invalid(f"{token.text} holds a control character or an unpaired surrogate", field)
    return value


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _tokenize(text: str, field: str) -> Iterator[_Token]:
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing whitespace is left
            return
        kind = match.lastgroup
        assert kind is not None
        if kind == "other":
            raise _invalid(f"unexpected {match.group(kind)!r}", field)
        yield _Token(kind, match.group(kind))
        position = match.end()


def _invalid(reason: str, field: str) -> InvalidArgument:
    return InvalidArgument(f"unsupported filter: {reason}", {field: reason})


__all__ = ["FILTER_MAX", "FilterField", "FilterSchema", "Kind", "ParsedFilter", "compile_filter", "parse_filter"]
