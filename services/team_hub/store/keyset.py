"""Keyset pagination: resume a sorted list after the last row of the previous page."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from mesh.errors import InvalidArgument

RowT = TypeVar("RowT")


def seek(columns: Sequence[InstrumentedAttribute[Any]], key: Sequence[Any], *, descending: bool) -> ColumnElement[bool]:
    """Rows strictly after ``key`` in the order of ``columns`` (all ascending or all descending)."""
    clauses: list[ColumnElement[bool]] = []
    for index, column in enumerate(columns):
        equal = [columns[i] == key[i] for i in range(index)]
        beyond = column < key[index] if descending else column > key[index]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


def split(rows: Sequence[RowT], limit: int, key_of: Callable[[RowT], list[Any]]) -> tuple[list[RowT], list[Any] | None]:
    """One page of ``rows`` (fetched with ``limit + 1``) and the sort key to resume after, if any."""
    page = list(rows[:limit])
    if len(rows) > limit and page:
        return page, key_of(page[-1])
    return page, None


def time_key(value: datetime.datetime) -> str:
    """A datetime as it is written into a page token."""
    return value.isoformat()


def parse_time_key(value: Any) -> datetime.datetime:
    """A datetime read back from a page token.

    Raises:
        InvalidArgument: the token was tampered with.

    """
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidArgument("invalid page_token", {"page_token": "use next_page_token as given"}) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def string_key(key: Sequence[Any], size: int) -> list[str]:
    """A page token's key of ``size`` strings.

    Raises:
        InvalidArgument: the token was tampered with.

    """
    if len(key) != size or not all(isinstance(part, str) for part in key):
        raise InvalidArgument("invalid page_token", {"page_token": "use next_page_token as given"})
    return [str(part) for part in key]
