"""JSON Schema (draft 2020-12) of a message's proto3 JSON form, from its descriptor.

For catalogues that describe payloads to people and tools outside the mesh (the webhook
event catalogue). Nested messages go to ``$defs`` under their full names, so recursive
types stay finite; the well-known types have their ProtoJSON shapes.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor

_FD = descriptor.FieldDescriptor
_STRING_INTEGERS = {_FD.TYPE_INT64, _FD.TYPE_UINT64, _FD.TYPE_SINT64, _FD.TYPE_FIXED64, _FD.TYPE_SFIXED64}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.Empty": {"type": "object"},
}


def message_schema(message: descriptor.Descriptor) -> dict[str, Any]:
    """The JSON Schema of a message's proto3 JSON object, with nested messages in ``$defs``."""
    defs: dict[str, Any] = {}
    root = _object(message, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": message.full_name,
        **root,
        "$defs": defs,
    }


def _object(message: descriptor.Descriptor, defs: dict[str, Any]) -> dict[str, Any]:
    properties = {field.json_name: _field(field, defs) for field in message.fields}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _field(field: descriptor.FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = _single(field.message_type.fields_by_name["value"], defs)
        return {"type": "object", "additionalProperties": value}
    single = _single(field, defs)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _single(field: descriptor.FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None:
        name = field.message_type.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name.startswith("google.protobuf.") and name.endswith("Value"):
            return _single(field.message_type.fields_by_name["value"], defs)
        if name not in defs:
            defs[name] = {}  # placeholder first: recursive messages refer to themselves
            defs[name] = _object(field.message_type, defs)
        return {"$ref": f"#/$defs/{name}"}
    if field.enum_type is not None:
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    if field.type == _FD.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type in _STRING_INTEGERS:
        return {"type": "string", "pattern": "^-?[0-9]+$"}
    if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return {"type": "number"}
    if field.type == _FD.TYPE_STRING:
        return {"type": "string"}
    if field.type == _FD.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "integer"}
