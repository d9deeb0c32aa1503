"""Populated example messages built from descriptors alone.

Catalogues show them as example payloads and the contract tests round-trip them: every
field that can be set is set (one member per oneof, one element per list and map, nested
messages down to a small depth), so a lossy encoding shows up as an inequality.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, message

_FD = descriptor.FieldDescriptor
_MAX_DEPTH = 4
_FIXED_SECONDS = 1_780_000_000  # 2026-05-28T20:26:40Z
_INTEGER_TYPES = {
    _FD.TYPE_INT32,
    _FD.TYPE_INT64,
    _FD.TYPE_UINT32,
    _FD.TYPE_UINT64,
    _FD.TYPE_SINT32,
    _FD.TYPE_SINT64,
    _FD.TYPE_FIXED32,
    _FD.TYPE_FIXED64,
    _FD.TYPE_SFIXED32,
    _FD.TYPE_SFIXED64,
}


def example(message_class: type[message.Message]) -> message.Message:
    """A message of this class with every settable field set to a plausible value."""
    result = message_class()
    _fill(result, depth=0, seen=())
    return result


def _fill(target: message.Message, depth: int, seen: tuple[str, ...]) -> None:
    desc = target.DESCRIPTOR
    if _fill_well_known(target, desc.full_name):
        return
    for field in desc.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof.fields[0] is not field:
            continue  # one member per oneof (proto3 optional fields are their own oneof)
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                _fill_map(target, field, depth, seen)
                continue
            name = field.message_type.full_name
            if depth >= _MAX_DEPTH or (name in seen and not _is_well_known(name)) or name == "google.protobuf.Any":
                continue
            child = getattr(target, field.name).add() if _is_repeated(field) else getattr(target, field.name)
            _fill(child, depth + 1, (*seen, desc.full_name))
            continue
        value = _scalar(field)
        if _is_repeated(field):
            getattr(target, field.name).append(value)
        else:
            setattr(target, field.name, value)


def _fill_map(target: message.Message, field: Any, depth: int, seen: tuple[str, ...]) -> None:
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    container = getattr(target, field.name)
    key = _scalar(key_field)
    if value_field.message_type is None:
        container[key] = _scalar(value_field)
    elif depth < _MAX_DEPTH and value_field.message_type.full_name not in seen:
        _fill(container[key], depth + 1, (*seen, target.DESCRIPTOR.full_name))


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _scalar(field: Any) -> Any:
    if field.enum_type is not None:
        values = [v.number for v in field.enum_type.values if v.number != 0]
        return values[0] if values else 0
    if field.type == _FD.TYPE_BOOL:
        return True
    if field.type in _INTEGER_TYPES:
        return 42
    if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return 0.5
    if field.type == _FD.TYPE_BYTES:
        return b"example"
    return f"example-{field.name}"


def _is_well_known(name: str) -> bool:
    return name.startswith("google.protobuf.")


def _fill_well_known(target: message.Message, name: str) -> bool:
    """Values for the well-known types whose JSON forms have rules of their own."""
    raw: Any = target
    if name == "google.protobuf.Timestamp":
        raw.seconds, raw.nanos = _FIXED_SECONDS, 0
    elif name == "google.protobuf.Duration":
        raw.seconds, raw.nanos = 90, 0
    elif name == "google.protobuf.Struct":
        raw.update({"example": "value"})
    elif name == "google.protobuf.Value":
        raw.string_value = "example"
    elif name == "google.protobuf.ListValue":
        raw.extend(["example"])
    elif name == "google.protobuf.FieldMask":
        raw.paths.append("display_name")
    elif name == "google.protobuf.Empty":
        pass
    elif name.startswith("google.protobuf.") and name.endswith("Value"):
        field = target.DESCRIPTOR.fields_by_name["value"]
        raw.value = _scalar(field)
    else:
        return False
    return True
