"""HTTP headers ↔ gRPC metadata, by allow-list in both directions.

In: ``Authorization``, the configured allow-list (``X-Request-Id``, ``X-Api-Key``,
``Idempotency-Key``, ``Traceparent``, ``Tracestate``, ``Origin`` by default) under their own
names, and ``Grpc-Metadata-<key>`` as ``<key>`` (never ``origin``, which only the browser's own
header may set). Out: response metadata (headers and trailers)
as ``Grpc-Metadata-<key>``. Nothing else crosses, so hop-by-hop and internal headers
never leak either way.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

DEFAULT_FORWARDED = (
    "authorization",
    "x-request-id",
    "x-api-key",
    "idempotency-key",
    "traceparent",
    "tracestate",
    # The browser's origin, for API keys limited to origins (allowed_origins).
    "origin",
)
# Only the real header may say where a browser request comes from: "Grpc-Metadata-Origin" could
# claim an allowed origin for a page that is not one.
_ONLY_UNDER_OWN_NAME = frozenset({"origin"})
_PREFIX = "grpc-metadata-"
_VALID_KEY = re.compile(r"^[0-9a-z_.\-]+$")
_RESERVED = ("grpc-", ":")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")


class InvalidHeader(ValueError):
    """A forwarded header value that gRPC metadata cannot carry (control or non-ASCII characters)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"header {name} has characters gRPC metadata cannot carry (printable ASCII only)")
        self.name = name


def request_metadata(headers: Iterable[tuple[str, str]], forwarded: frozenset[str]) -> list[tuple[str, str | bytes]]:
    """The metadata to send upstream for these (lower-case) request headers.

    Raises:
        InvalidHeader: a forwarded value is not printable ASCII (gRPC would refuse it).

    """
    metadata: list[tuple[str, str | bytes]] = []
    for name, value in headers:
        if name.startswith(_PREFIX):
            key = name[len(_PREFIX) :]
            if key in _ONLY_UNDER_OWN_NAME:
                continue
        elif name in forwarded:
            key = name
        else:
            continue
        if not key or not _VALID_KEY.match(key) or key.startswith(_RESERVED):
            continue
        if key.endswith("-bin"):
            try:
                metadata.append((key, base64.b64decode(value + "=" * (-len(value) % 4))))
            except ValueError:
                continue
        else:
            if not _PRINTABLE_ASCII.match(value):
                raise InvalidHeader(name)
            metadata.append((key, value))
    return metadata


def response_headers(metadata: Iterable[tuple[str, str | bytes]]) -> list[tuple[str, str]]:
    """Response headers for upstream metadata (initial and trailing)."""
    headers: list[tuple[str, str]] = []
    for key, value in metadata:
        if key.startswith(_RESERVED) or key in ("content-type", "te"):
            continue
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        headers.append((f"Grpc-Metadata-{key}", text))
    return headers
