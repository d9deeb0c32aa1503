"""HTTP headers ↔ gRPC metadata, by allow-list in both directions.

In: ``Authorization``, the configured allow-list (``X-Request-Id``, ``X-Api-Key``,
``Idempotency-Key``, ``Traceparent``, ``Tracestate``, ``Origin`` by default) under their own
names, and ``Grpc-Metadata-<key>`` as ``<key>`` (never ``origin``, which only the browser's own
header may set). Out: response metadata (headers and trailers)
as ``Grpc-Metadata-<key>``. Nothing else crosses, so hop-by-hop and internal headers
never leak either way.

A request carries at most one credential, under its own header: a second
``Authorization`` or ``X-Api-Key``, or a credential smuggled as
``Grpc-Metadata-Authorization`` / ``Grpc-Metadata-X-Api-Key``, is refused
(:class:`RefusedCredential`, a 401), never passed on for the service to pick one.
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
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})


class InvalidHeader(ValueError):
    """A forwarded header value that gRPC metadata cannot carry (control or non-ASCII characters)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"header {name} has characters gRPC metadata cannot carry (printable ASCII only)")
        self.name = name


class RefusedCredential(InvalidHeader):
    """More than one credential, or one sent as ``Grpc-Metadata-*``; ``name`` is the credential's key."""

    def __init__(self, name: str, reason: str) -> None:
        ValueError.__init__(self, reason)
        self.name = name


def request_metadata(headers: Iterable[tuple[str, str]], forwarded: frozenset[str]) -> list[tuple[str, str | bytes]]:
    """The metadata to send upstream for these (lower-case) request headers.

    Raises:
        InvalidHeader: a forwarded value is not printable ASCII (gRPC would refuse it).
        RefusedCredential: more than one credential, or one under ``Grpc-Metadata-``.

    """
    metadata: list[tuple[str, str | bytes]] = []
    credentials = 0
    for name, value in headers:
        if name.startswith(_PREFIX):
            key = name[len(_PREFIX) :]
            if key.removesuffix("-bin") in CREDENTIAL_HEADERS:
                raise RefusedCredential(key.removesuffix("-bin"), f"a credential is never accepted as {name}")
            if key in _ONLY_UNDER_OWN_NAME:
                continue
        elif name in forwarded:
            key = name
            credentials += name in CREDENTIAL_HEADERS
            if credentials > 1:
                raise RefusedCredential(name, "more than one credential on one request")
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
