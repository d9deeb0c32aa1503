"""The ``ListAgents`` filter: a small subset of AIP-160.

Grammar (``AND`` is the only operator, ``=`` the only comparison)::

    filter := term ("AND" term)*
    term   := "state" "=" STATE | "labels." KEY "=" STRING
    STATE  := DRAFT | PUBLISHED | ARCHIVED   (or AGENT_STATE_…, bare or quoted)
    STRING := a double-quoted string

``state = PUBLISHED AND labels.team = "sales"``. Anything else is refused with
INVALID_ARGUMENT "unsupported filter", rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping

from mesh.errors import InvalidArgument
from services.agents.domain.lifecycle import AgentState
from services.agents.domain.validation import LABEL_KEY

FILTER_MAX = 1_000

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<equals>=)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.-]*)
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True, slots=True)
class AgentFilter:
    """A parsed filter: every condition must hold.

    Attributes:
        state: only agents in this state, or any state when ``None``.
        labels: only agents carrying every one of these labels with exactly these values.

    """

    state: AgentState | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str


def parse_filter(text: str) -> AgentFilter:
    """Parse a ``ListAgents`` filter (empty text matches everything).

    Raises:
        InvalidArgument: "unsupported filter", with the reason as the ``filter`` violation.

    """
    if len(text) > FILTER_MAX:
        raise _unsupported(f"is longer than {FILTER_MAX} characters")
    tokens = list(_tokenize(text))
    if not tokens:
        return AgentFilter()
    state: AgentState | None = None
    labels: dict[str, str] = {}
    position = 0
    while True:
        if len(tokens) < position + 3:
            raise _unsupported('expected a condition like state = PUBLISHED or labels.team = "sales"')
        field, equals, value = tokens[position : position + 3]
        if field.kind != "word" or equals.kind != "equals" or value.kind not in ("word", "string"):
            raise _unsupported(f"cannot read a condition at {field.text!r}")
        if field.text == "state":
            if state is not None:
                raise _unsupported("names state more than once")
            state = _state(value)
        elif field.text.startswith("labels."):
            key = field.text.removeprefix("labels.")
            if not LABEL_KEY.fullmatch(key) or value.kind != "string":
                raise _unsupported(
                    f'{field.text} must be a label key compared with a quoted string: labels.team = "sales"'
                )
            if labels.get(key, _string(value)) != _string(value):
                raise _unsupported(f"gives {field.text} two values")
            labels[key] = _string(value)
        else:
            raise _unsupported(f"cannot filter on {field.text!r}; use state or labels.<key>")
        position += 3
        if position == len(tokens):
            return AgentFilter(state=state, labels=labels)
        if tokens[position].kind != "word" or tokens[position].text != "AND":
            raise _unsupported(f"expected AND, found {tokens[position].text!r}")
        position += 1


def _tokenize(text: str) -> Iterator[_Token]:
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing whitespace is left
            return
        kind = match.lastgroup
        assert kind is not None
        if kind == "other":
            raise _unsupported(f"unexpected {match.group(kind)!r}")
        yield _Token(kind, match.group(kind))
        position = match.end()


def _state(token: _Token) -> AgentState:
    name = _string(token) if token.kind == "string" else token.text
    try:
        return AgentState(name.removeprefix("AGENT_STATE_"))
    except ValueError:
        raise _unsupported(f"{name!r} is not a state; use DRAFT, PUBLISHED or ARCHIVED") from None


def _string(token: _Token) -> str:
    if token.kind != "string":
        return token.text
    try:
        value = json.loads(token.text)
    except json.JSONDecodeError:
        raise _unsupported(f"{token.text} is not a valid string") from None
    assert isinstance(value, str)
    return value


def _unsupported(reason: str) -> InvalidArgument:
    return InvalidArgument(f"unsupported filter: {reason}", {"filter": reason})
