"""Render gRPC responses as HTTP: ProtoJSON, ``HttpBody`` bytes, NDJSON and SSE streams.

ProtoJSON choices (documented in docs/REST.md): lowerCamelCase names (``json_name``),
fields without presence are always printed (``0``, ``false``, ``""``, ``[]``), unset
message fields are omitted, enums as names, 64-bit integers as strings.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

HTTP_BODY = "google.api.HttpBody"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
JSON = "application/json"


def to_dict(message: Any) -> Any:
    """A message as ProtoJSON data (dicts and lists)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def select_body(message: Any, response_body: str) -> Any:
    """The part of a response the binding returns: the message or one of its fields."""
    if not response_body:
        return message
    field = message.DESCRIPTOR.fields_by_name[response_body]
    if field.type == field.TYPE_MESSAGE and not field.is_repeated:
        return getattr(message, response_body)
    return _FieldValue(message, field.json_name)


class _FieldValue:
    """A repeated, map or scalar response_body: rendered as that field's JSON value."""

    def __init__(self, message: Any, json_name: str) -> None:
        self.message = message
        self.json_name = json_name


def render_json(selected: Any) -> bytes:
    """JSON bytes of a selected response body."""
    if isinstance(selected, _FieldValue):
        return dumps(to_dict(selected.message).get(selected.json_name))
    return dumps(to_dict(selected))


def http_body(selected: Any) -> tuple[str, bytes] | None:
    """``(content_type, data)`` when the selected body is a ``google.api.HttpBody``."""
    if isinstance(selected, _FieldValue) or selected.DESCRIPTOR.full_name != HTTP_BODY:
        return None
    return (selected.content_type or "application/octet-stream", bytes(selected.data))


def ndjson_line(payload: bytes, *, error: bool = False) -> bytes:
    """One NDJSON line: ``{"result": …}`` or ``{"error": …}`` (grpc-gateway's framing)."""
    key = b"error" if error else b"result"
    return b'{"' + key + b'":' + payload + b"}\n"


def sse_event(payload: bytes, *, error: bool = False) -> bytes:
    """One server-sent event carrying a JSON payload (``event: error`` for a failure)."""
    head = b"event: error\n" if error else b""
    return head + b"data: " + payload + b"\n\n"
