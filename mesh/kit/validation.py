"""One collector for every bad field of a request: one INVALID_ARGUMENT naming them all.

Checks report into a :class:`Violations` collector with the field's path in the request
(``agent.display_name``, ``agent.labels["team"]``, ``update_mask.paths[1]``); at the end
:meth:`Violations.raise_if_any` raises one :class:`~mesh.errors.InvalidArgument` whose
``google.rpc.BadRequest`` lists every path, so a request with three bad fields hears
about all three at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

from mesh.errors import InvalidArgument

# Free text may hold line breaks and tabs, never other control characters (PostgreSQL
# refuses NUL outright; the rest only ever arrive by mistake or with malice).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_CHARACTERS_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def map_key_path(field: str, key: str) -> str:
    """The path of one map entry: ``labels["team"]`` (the key JSON-quoted, as AIP-161 does)."""
    return f"{field}[{json.dumps(key)}]"


class Violations:
    """``{field path: problem}``, gathered across every check of one request."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._found: dict[str, str] = {}

    def add(self, path: str, problem: str) -> None:
        """Record a problem with ``path`` (the first problem of a path wins)."""
        self._found.setdefault(f"{self._prefix}{path}", problem)

    def update(self, problems: Mapping[str, str], *, prefix: str = "") -> None:
        """Record every problem of a mapping, its paths under ``prefix`` (``"agent."``)."""
        for path, problem in problems.items():
            self.add(f"{prefix}{path}", problem)

    def check(self, condition: bool, path: str, problem: str) -> bool:
        """Record ``problem`` unless ``condition`` holds; returns ``condition``."""
        if not condition:
            self.add(path, problem)
        return condition

    def text(self, path: str, value: str, *, limit: int, required: bool = False, multiline: bool = False) -> None:
        """Check free text: present if ``required``, at most ``limit`` characters, no control characters."""
        if (problem := text_problem(value, limit=limit, required=required, multiline=multiline)) is not None:
            self.add(path, problem)

    def nested(self, prefix: str) -> Violations:
        """A collector writing into this one with paths under ``prefix`` (``"agent.draft."``)."""
        child = Violations(self._prefix + prefix)
        child._found = self._found
        return child

    def __bool__(self) -> bool:
        return bool(self._found)

    def __len__(self) -> int:
        return len(self._found)

    def __iter__(self) -> Iterator[str]:
        return iter(self._found)

    def as_dict(self) -> dict[str, str]:
        """The problems found so far, by path."""
        return dict(self._found)

    def raise_if_any(self) -> None:
        """Raise one INVALID_ARGUMENT naming every bad field, if there is any.

        Raises:
            InvalidArgument: with a BadRequest field violation per bad field, sorted by path.

        """
        require_valid(self._found)


def require_valid(violations: Mapping[str, str]) -> None:
    """Raise one INVALID_ARGUMENT for a ``{path: problem}`` mapping, if it is not empty.

    Raises:
        InvalidArgument: ``"2 invalid fields: a, b"`` with every path in BadRequest.

    """
    if not violations:
        return
    named = dict(sorted(violations.items()))
    noun = "field" if len(named) == 1 else "fields"
    raise InvalidArgument(f"{len(named)} invalid {noun}: {', '.join(named)}", named)


def text_problem(value: str, *, limit: int, required: bool = False, multiline: bool = False) -> str | None:
    """Why a text value is unacceptable, or ``None``."""
    if required and not value.strip():
        return "is required"
    if len(value) > limit:
        return f"must be at most {limit} characters"
    forbidden = _CONTROL_CHARACTERS_BUT_LAYOUT if multiline else _CONTROL_CHARACTERS
    if forbidden.search(value):
        return "must not contain control characters" + (" other than tabs and line breaks" if multiline else "")
    return None
