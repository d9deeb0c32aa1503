"""``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header) as the request's AIP-155 ``request_id``.

For a method whose request message has a ``request_id`` field, a request that sends the
header and leaves ``request_id`` empty gets one derived from the key, so the service's
``request_id`` store deduplicates it like any other retry: same key and same body → the
first response; same key, another body → INVALID_ARGUMENT naming ``request_id``.

The derivation depends on the key alone (not on the principal, whose token changes between
retries): a key that already is a UUID4 is used as it is (lower case), so ``Idempotency-Key:
<uuid>`` and ``"request_id": "<uuid>"`` are the same request; any other key becomes a UUID
with the version-4 layout over SHA-256 of the key (deterministic, and as unlikely to collide
as a random one), so it passes the contract's UUID4 rule. The store scopes ids per
organisation and method, so one key on two methods means two requests.

The header value may be an RFC 8941 string (``"abc"``, as the draft writes it) or bare
(``abc``, as most APIs accept); 1–255 visible ASCII characters. A body ``request_id`` and a
header that disagree are a 400. Methods without ``request_id`` (idempotent by contract)
ignore the header.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from gateway_rest.errors import bad_request

HEADER = "idempotency-key"
FIELD = "request_id"
MAX_LENGTH = 255
_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_VISIBLE = re.compile(r"^[\x21-\x7e]+$")
_NAMESPACE = b"vocelio idempotency-key\x00"


def request_id_for(key: str) -> str:
    """The ``request_id`` an ``Idempotency-Key`` stands for.

    Raises:
        EdgeError: the key is empty, too long or not visible ASCII (400).

    """
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not key or len(key) > MAX_LENGTH or not _VISIBLE.match(key):
        raise bad_request("Idempotency-Key", f"must be 1 to {MAX_LENGTH} visible ASCII characters, such as a UUID")
    if _UUID4.match(key.lower()):
        return key.lower()
    digest = hashlib.sha256(_NAMESPACE + key.encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def apply_idempotency_key(message: Any, header: str | None) -> None:
    """Put the request_id the header stands for into ``message`` (see the module's rules).

    Raises:
        EdgeError: a malformed key, or one that disagrees with the body's ``request_id`` (400).

    """
    if header is None or FIELD not in message.DESCRIPTOR.fields_by_name:
        return
    derived = request_id_for(header)
    current: str = getattr(message, FIELD)
    if not current:
        setattr(message, FIELD, derived)
    elif current.lower() != derived:
        raise bad_request(
            FIELD,
            "differs from the Idempotency-Key header; send one of them, or the same value in both",
        )
