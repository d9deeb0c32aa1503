"""Set request fields from text: path variables and query parameters.

Values are read as ProtoJSON literals of the field's type: numbers in decimal (64-bit
ones too), booleans ``true``/``false`` (``1``/``0`` accepted), enums by name or number,
bytes as base64 (standard or URL-safe, padding optional), and the well-known types in
their JSON forms (Timestamp RFC 3339, Duration ``"1.5s"``, FieldMask ``"a,b.c"`` in
camelCase or snake_case, wrappers as their plain value). A oneof takes one member per
request: naming a second one is an error, as in a JSON body.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from google.protobuf import descriptor

FD = descriptor.FieldDescriptor

_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_WRAPPERS = {
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
_TEXT_WKT = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
_SNAKE_PART = re.compile(r"_([a-z0-9])")


class FieldError(ValueError):
    """A value cannot be stored in the field it names.

    Attributes:
        field: the field path as the client wrote it.
        reason: why not, safe to show to the client.

    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownField(FieldError):
    """A path names no field at all (as opposed to a known field used the wrong way)."""


def resolve(message_descriptor: descriptor.Descriptor, path: str) -> list[descriptor.FieldDescriptor]:
    """The chain of fields a dotted path names; proto names and JSON names are both accepted.

    Raises:
        UnknownField: a part of the path names no field.
        FieldError: the path passes through a repeated, map or scalar field.

    """
    chain: list[descriptor.FieldDescriptor] = []
    current: descriptor.Descriptor | None = message_descriptor
    for part in path.split("."):
        if chain and chain[-1].is_repeated:
            raise FieldError(path, "goes through a repeated or map field")
        if current is None:
            raise FieldError(path, "goes through a field that is not a message")
        field = current.fields_by_name.get(part) or _by_json_name(current, part)
        if field is None:
            raise UnknownField(path, "no such field")
        chain.append(field)
        current = field.message_type if field.type == FD.TYPE_MESSAGE else None
    return chain


def _by_json_name(message_descriptor: descriptor.Descriptor, name: str) -> descriptor.FieldDescriptor | None:
    for field in message_descriptor.fields:
        if field.json_name == name:
            return field
    return None


def set_path(message: Any, chain: list[descriptor.FieldDescriptor], values: list[str], path: str) -> None:
    """Store text value(s) at the end of a field chain, creating parents on the way."""
    target = message
    for field in chain[:-1]:
        target = getattr(target, field.name)
    leaf = chain[-1]
    if leaf.message_type is not None and leaf.message_type.GetOptions().map_entry:
        raise FieldError(path, "map fields cannot be set from the URL")
    if leaf.is_repeated:
        container = getattr(target, leaf.name)
        for value in values:
            if leaf.type == FD.TYPE_MESSAGE:
                _set_message_from_text(container.add(), value, path)
            else:
                container.append(convert(leaf, value, path))
        return
    if len(values) > 1:
        raise FieldError(path, "is not repeated but was given several times")
    oneof = leaf.containing_oneof
    if oneof is not None:
        chosen = target.WhichOneof(oneof.name)
        if chosen is not None and chosen != leaf.name:
            raise FieldError(path, f"is in oneof {oneof.name} with {chosen}, which is already set")
    if leaf.type == FD.TYPE_MESSAGE:
        _set_message_from_text(getattr(target, leaf.name), values[0], path)
    else:
        setattr(target, leaf.name, convert(leaf, values[0], path))


def _set_message_from_text(message: Any, text: str, path: str) -> None:
    name = message.DESCRIPTOR.full_name
    if name in _WRAPPERS:
        message.value = convert(message.DESCRIPTOR.fields_by_name["value"], text, path)
        return
    if name in _TEXT_WKT:
        if name == "google.protobuf.FieldMask":
            # ProtoJSON paths are camelCase; snake_case (the proto names) is accepted too.
            text = _SNAKE_PART.sub(lambda match: match.group(1).upper(), text)
        try:
            message.FromJsonString(text)
        except ValueError as error:
            raise FieldError(path, f"is not a valid {name.rsplit('.', 1)[1]}: {error}") from None
        return
    raise FieldError(path, f"is a {name} message; set its fields as {path}.<field>")


def convert(field: descriptor.FieldDescriptor, text: str, path: str) -> Any:
    """One text value converted to the Python value of a scalar or enum field."""
    kind = field.type
    if kind == FD.TYPE_STRING:
        return text
    if kind == FD.TYPE_BOOL:
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise FieldError(path, f"expects true or false, got {text!r}")
    if kind in _INT_RANGES:
        try:
            number = int(text, 10)
        except ValueError:
            raise FieldError(path, f"expects an integer, got {text!r}") from None
        low, high = _INT_RANGES[kind]
        if not low <= number <= high:
            raise FieldError(path, f"{number} is out of range [{low}, {high}]")
        return number
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if text in special:
            return special[text]
        try:
            return float(text)
        except ValueError:
            raise FieldError(path, f"expects a number, got {text!r}") from None
    if kind == FD.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None  # an enum field always has its enum type
        value = enum.values_by_name.get(text)
        if value is not None:
            return value.number
        try:
            number = int(text, 10)
        except ValueError:
            names = ", ".join(enum.values_by_name)
            raise FieldError(path, f"{text!r} is not one of {names}") from None
        if number not in enum.values_by_number:
            raise FieldError(path, f"{number} is not a value of {enum.name}")
        return number
    if kind == FD.TYPE_BYTES:
        padded = text + "=" * (-len(text) % 4)
        try:
            if "-" in text or "_" in text:
                return base64.urlsafe_b64decode(padded)
            return base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            raise FieldError(path, "expects base64") from None
    raise FieldError(path, "cannot be set from text")
