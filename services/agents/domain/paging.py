"""Page sizes and page tokens (AIP-158).

A page token carries the position of the last item of the page — for agents, their
``(create_time, id)`` — never an offset, so pages stay stable while items are added.
It is signed (HMAC-SHA256 with a key derived from the mesh secret) and bound to the
query it came from: an edited token, or a token replayed with another filter, is
INVALID_ARGUMENT. Tokens are opaque to clients; they are not encrypted, since they hold
nothing the caller cannot already read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence

from mesh.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100

Position = tuple[int | str, ...]

_FORMAT = 1
_MAC_BYTES = 16


def page_size(requested: int, *, field: str = "page_size") -> int:
    """The number of items to return: 0 means the default (50); above 100 is lowered to 100.

    Raises:
        InvalidArgument: ``requested`` is negative.

    """
    if requested < 0:
        raise InvalidArgument(f"{field} must not be negative", {field: "must be 0 (default) to 100"})
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


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

    def encode(self, position: Sequence[int | str], query: str) -> str:
        """A token that resumes a listing after ``position``.

        Args:
            position: the ordering key of the last item returned (JSON numbers and strings).
            query: everything that shapes the listing (caller's scope, filter, options);
                the token is refused with any other query.

        """
        body = json.dumps([_FORMAT, self._query_digest(query), *position], separators=(",", ":")).encode()
        return f"{_b64encode(body)}.{_b64encode(self._mac(body))}"

    def decode(self, token: str, query: str, *, field: str = "page_token") -> Position:
        """The position a token resumes after.

        Raises:
            InvalidArgument: the token was not issued here, was edited, or belongs to another query.

        """
        encoded_body, _, encoded_mac = token.partition(".")
        try:
            body = _b64decode(encoded_body)
            mac = _b64decode(encoded_mac)
        except (binascii.Error, ValueError):
            raise _invalid(field, "is not a page token from this listing") from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise _invalid(field, "is not a page token from this listing")
        fields = json.loads(body)
        if not isinstance(fields, list) or len(fields) < 2 or fields[0] != _FORMAT:
            raise _invalid(field, "is not a page token from this listing")
        if fields[1] != self._query_digest(query):
            raise _invalid(field, "belongs to a listing with other parameters (filter, parent or options changed)")
        position = tuple(fields[2:])
        if not all(isinstance(value, (int, str)) and not isinstance(value, bool) for value in position):
            raise _invalid(field, "is not a page token from this listing")
        return position

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def _query_digest(self, query: str) -> str:
        return hashlib.sha256(query.encode()).hexdigest()[:16]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field} {problem}", {field: problem})
