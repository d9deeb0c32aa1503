"""Page sizes, signed page tokens bound to their query, and keyset pages (AIP-158).

A page token carries the position of the last item of the page (its sort key and id),
never an offset, so pages stay stable while items are added. It is signed (HMAC-SHA256,
truncated to 128 bits) and bound to the query it came from: the binding is derived from
the request message itself — every field but ``page_size`` and ``page_token``, serialised
deterministically — plus whatever else shapes the listing (the caller's scope). An edited
token, or a token replayed with another filter, order or parent, is INVALID_ARGUMENT.
Tokens are not encrypted: they hold nothing the caller cannot already read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from google.protobuf import message
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
PAGING_FIELDS = frozenset({"page_size", "page_token"})

Position = tuple[int | str, ...]
RowT = TypeVar("RowT")

_FORMAT = 1
_MAC_BYTES = 16
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
_NOT_OURS = "is not a page token from this listing"


def page_size(
    requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE, field: str = "page_size"
) -> int:
    """The number of items to return: 0 means ``default``; above ``maximum`` is lowered to it.

    Raises:
        InvalidArgument: ``requested`` is negative.

    """
    if requested < 0:
        raise InvalidArgument(f"{field} must not be negative", {field: f"must be 0 (default) to {maximum}"})
    if requested == 0:
        return default
    return min(requested, maximum)


def query_binding(request: message.Message, *scope: str) -> str:
    """What a page token of this request is bound to: the request without its paging fields, and ``scope``.

    Args:
        request: the List request (filter, order_by, parent, show_deleted …).
        scope: anything else that shapes the listing and is not in the request (the
            organisation the caller lists).

    """
    copy = type(request)()
    copy.CopyFrom(request)
    for field in PAGING_FIELDS:
        if field in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(field)
    body = base64.b64encode(copy.SerializeToString(deterministic=True)).decode()
    return json.dumps([copy.DESCRIPTOR.full_name, body, *scope], separators=(",", ":"))


class PageTokens:
    """Issues and checks page tokens with one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a page-token key needs at least 16 bytes")
        self._key = key

    @classmethod
    def from_secret(cls, secret: str, purpose: str) -> PageTokens:
        """Tokens keyed by ``HMAC(secret, purpose)``, so no two uses of one secret share a key."""
        return cls(hmac.new(secret.encode(), f"vocelio/page-token/{purpose}".encode(), hashlib.sha256).digest())

    @classmethod
    def ephemeral(cls) -> PageTokens:
        """Tokens keyed by a random per-process key (tokens die with the process)."""
        return cls(secrets.token_bytes(32))

    def encode(self, position: Sequence[int | str], binding: str) -> str:
        """A token that resumes a listing after ``position``.

        Args:
            position: the ordering key of the last item returned (JSON numbers and strings).
            binding: :func:`query_binding` of the request; the token is refused with any other.

        """
        body = json.dumps([_FORMAT, _digest(binding), *position], separators=(",", ":")).encode()
        return f"{_b64encode(body)}.{_b64encode(self._mac(body))}"

    def decode(self, token: str, binding: str, *, field: str = "page_token") -> Position:
        """The position a token resumes after.

        Raises:
            InvalidArgument: the token was not issued here, was edited, or belongs to another query.

        """
        encoded_body, _, encoded_mac = token.partition(".")
        try:
            body = _b64decode(encoded_body)
            mac = _b64decode(encoded_mac)
        except (binascii.Error, ValueError):
            raise _invalid(field, _NOT_OURS) from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise _invalid(field, _NOT_OURS)
        fields = json.loads(body)
        if not isinstance(fields, list) or len(fields) < 2 or fields[0] != _FORMAT:
            raise _invalid(field, _NOT_OURS)
        if fields[1] != _digest(binding):
            raise _invalid(field, "belongs to a listing with other parameters (filter, parent or options changed)")
        position = tuple(fields[2:])
        if not all(isinstance(value, int | str) and not isinstance(value, bool) for value in position):
            raise _invalid(field, _NOT_OURS)
        return position

    def decode_optional(self, token: str, binding: str, *, field: str = "page_token") -> Position | None:
        """:meth:`decode`, with an empty token meaning "the first page" (``None``)."""
        return self.decode(token, binding, field=field) if token else None

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]


# Keyset pages


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[RowT]):
    """One page of a listing.

    Attributes:
        items: the rows, in listing order.
        next_after: the position to resume after, or ``None`` on the last page.

    """

    items: Sequence[RowT]
    next_after: Position | None


def time_key(moment: datetime.datetime) -> int:
    """A timestamp as an exact position value (microseconds since the epoch)."""
    return (moment - _EPOCH) // _MICROSECOND


def from_time_key(micros: int) -> datetime.datetime:
    """The timestamp of :func:`time_key`."""
    return _EPOCH + micros * _MICROSECOND


def position_shape(position: Position, *types: type, field: str = "page_token") -> tuple[Any, ...]:
    """``position`` if its values have these types (``int, str``), else the token is not ours.

    Raises:
        InvalidArgument: the position has another shape (a token of another listing's format).

    """
    if len(position) != len(types) or not all(
        isinstance(value, kind) and not isinstance(value, bool) for value, kind in zip(position, types, strict=True)
    ):
        raise _invalid(field, _NOT_OURS)
    return position


async def keyset_page(
    session: AsyncSession,
    query: Select[Any],
    *,
    keys: Sequence[Any],
    after: Sequence[Any] | None,
    limit: int,
    position_of: Callable[[RowT], Position],
    descending: bool = True,
) -> Page[RowT]:
    """One page of ``query`` ordered by ``keys`` (the last one unique, usually the id).

    Args:
        session: the transaction.
        query: the filtered selection, without order or limit.
        keys: the ordering columns (``AgentRow.create_time, AgentRow.id``).
        after: the key values of the previous page's last row (SQL values, decoded from its position).
        limit: the page size.
        position_of: a row's position for its page token.
        descending: newest first (the default) or oldest first.

    """
    if after is not None:
        comparison = tuple_(*keys) < tuple_(*after) if descending else tuple_(*keys) > tuple_(*after)
        query = query.where(comparison)
    order = [key.desc() if descending else key.asc() for key in keys]
    rows: list[RowT] = list((await session.execute(query.order_by(*order).limit(limit + 1))).scalars())
    if len(rows) <= limit:
        return Page(rows, None)
    return Page(rows[:limit], position_of(rows[limit - 1]))


def _digest(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()[:16]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field} {problem}", {field: problem})
