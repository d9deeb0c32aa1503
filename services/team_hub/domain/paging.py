"""Page sizes and page tokens (AIP-158).

A page token carries the sort key of the last item returned (keyset pagination) and a
fingerprint of the request it belongs to, so that a token cannot be replayed with
another filter. It is opaque to callers but not secret: it holds values the caller saw.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from mesh.errors import InvalidArgument

MAX_PAGE_SIZE = 100


def page_size(value: int, default: int = 50, field: str = "page_size") -> int:
    """The page size to use: ``default`` for 0, at most 100.

    Raises:
        InvalidArgument: negative.

    """
    if value < 0:
        raise InvalidArgument("page_size cannot be negative", {field: "0 or more"})
    if value == 0:
        return default
    return min(value, MAX_PAGE_SIZE)


def fingerprint(*parts: object) -> str:
    """A short digest of the request parameters a token is bound to."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:12]


def encode_token(key: list[Any], bound_to: str) -> str:
    """A page token that resumes after the item whose sort key is ``key``."""
    raw = json.dumps({"k": key, "f": bound_to}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, bound_to: str, field: str = "page_token") -> list[Any] | None:
    """The sort key in a page token (``None`` for the first page).

    Raises:
        InvalidArgument: malformed, or from a request with other parameters.

    """
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid page_token", {field: "use next_page_token from a previous response"}) from None
    if not isinstance(data, dict) or data.get("f") != bound_to or not isinstance(data.get("k"), list):
        raise InvalidArgument(
            "page_token does not belong to this request", {field: "use it with the same filter and options"}
        )
    key: list[Any] = data["k"]
    return key
