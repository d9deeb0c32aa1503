"""The checks of single JSON values for :mod:`mesh.payload_check`: scalars, map keys and well-known types.

Each mirrors what ``json_format.ParseDict`` does with one value of a field (``_ConvertScalarFieldValue``,
``_ConvertInteger``, ``_ConvertFloat``, ``FromJsonString``), reading the ``Value`` in place.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Callable

from google.protobuf import descriptor, json_format, message_factory, struct_pb2

# A value checker: (the Value, its WhichOneof("kind"), the depth of the enclosing message) → None or
# "<path suffix>: <problem>", the suffix being "" or ".field…" or "[index]…" so parents prepend their key.
ValueCheck = Callable[[struct_pb2.Value, str, int], str | None]

MAX_DEPTH = 100
"""ParseDict's default ``max_recursion_depth``: messages nested deeper are refused."""

_KIND_TEXT = {
    "number_value": "a number",
    "string_value": "a string",
    "bool_value": "a boolean",
    "struct_value": "an object",
    "list_value": "a list",
}
INT_RANGES = {
    descriptor.FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    descriptor.FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    descriptor.FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    descriptor.FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_FLOAT_MAX = float.fromhex("0x1.fffffep+127")
_FLOAT_SPELLINGS = frozenset(("Infinity", "-Infinity", "NaN"))
GENERIC_WKT = frozenset(("google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"))
FALLBACK_WKT = frozenset(
    ("google.protobuf.Any", "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")
)
VALUE_TYPE = "google.protobuf.Value"


def not_kind(expected: str, kind: str) -> str:
    """The problem of a value of the wrong kind."""
    return f": must be {expected}, not {_KIND_TEXT.get(kind, kind)}"


def check_string(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
    """A string field: a JSON string."""
    # Strings out of a Struct are valid UTF-8 already: ParseDict's unpaired-surrogate check cannot fire.
    return None if kind == "string_value" else not_kind("a string", kind)


def check_bool(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
    """A bool field: ``true`` or ``false``."""
    return None if kind == "bool_value" else not_kind("a boolean", kind)


def check_bytes(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
    """A bytes field: a string that ParseDict's base64 decoding takes."""
    if kind != "string_value":
        return not_kind("a base64 string", kind)
    encoded = value.string_value.encode()
    try:  # exactly ParseDict's decoding: URL-safe alphabet, padding optional
        base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except ValueError:
        return ": is not base64"
    return None


def integer_check(low: int, high: int) -> ValueCheck:
    """An integer field of ``[low, high]``: an integral number, or a string ``int()`` or ``float()`` reads."""

    def check_integer(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
        if kind == "number_value":
            number = value.number_value
            if not number.is_integer():  # NaN and infinities included
                return f": {number} is not an integer"
            whole = int(number)
        elif kind == "string_value":
            text = value.string_value
            if " " in text:
                return f": {text!r} is not an integer"
            try:
                whole = int(text)
            except ValueError:
                try:
                    as_float = float(text)
                except ValueError:
                    return f": {text!r} is not an integer"
                if not as_float.is_integer():
                    return f": {text!r} is not an integer"
                whole = int(as_float)
        else:
            return not_kind("an integer", kind)
        if low <= whole <= high:
            return None
        return f": {whole} is out of range [{low}, {high}]"

    return check_integer


def _float_problem(value: struct_pb2.Value, kind: str, single: bool) -> str | None:
    if kind == "number_value":
        number = value.number_value
        if number != number or number in (float("inf"), float("-inf")):
            return ': a non-finite number must be the string "NaN", "Infinity" or "-Infinity"'
        if single and not -_FLOAT_MAX <= number <= _FLOAT_MAX:
            return f": {number} is out of range for a float"
        return None
    if kind == "string_value":
        text = value.string_value
        if text == "nan":
            return ': "nan" must be spelled "NaN"'
        try:
            float(text)
        except ValueError:
            if text not in _FLOAT_SPELLINGS:
                return f": {text!r} is not a number"
        return None
    if kind == "bool_value":
        return None  # ParseDict takes float(true) == 1.0
    return not_kind("a number", kind)


def check_double(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
    """A double field: a finite number, a numeric string or ``"NaN"``/``"Infinity"``/``"-Infinity"``."""
    return _float_problem(value, kind, single=False)


def check_float(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
    """A float field: as a double, and a number must fit a float."""
    return _float_problem(value, kind, single=True)


def map_key_check(key_field: descriptor.FieldDescriptor) -> Callable[[str], str | None]:
    """The check of a map key (always a string in JSON) converted to the key type."""
    cpp_type = key_field.cpp_type
    if cpp_type == descriptor.FieldDescriptor.CPPTYPE_STRING:
        return lambda key: None
    if cpp_type == descriptor.FieldDescriptor.CPPTYPE_BOOL:
        return lambda key: None if key in ("true", "false") else ': a bool key must be "true" or "false"'
    check_integer = integer_check(*INT_RANGES[cpp_type])

    def check_key(key: str) -> str | None:
        as_value = struct_pb2.Value(string_value=key)
        problem = check_integer(as_value, "string_value", 0)
        return None if problem is None else f" (key){problem}"

    return check_key


# The shape MessageToDict writes (UTC, 0-9 fraction digits). FromJsonString goes through strptime (~10 µs);
# for this shape its verdict is exactly whether the date and time exist, which datetime() tells far sooner.
_CANONICAL_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?Z"
)


def canonical_timestamp_exists(text: str) -> bool:
    """Whether ``text`` has MessageToDict's Timestamp shape and names a time that exists."""
    found = _CANONICAL_TIMESTAMP.fullmatch(text)
    if found is None:
        return False
    year, month, day, hour, minute, second = map(int, found.groups())
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


# Likewise the Duration shape MessageToDict writes: FromJsonString refuses it only beyond ±10,000 years.
_CANONICAL_DURATION = re.compile(r"-?([0-9]{1,12})(?:\.[0-9]{1,9})?s")
_DURATION_SECONDS_MAX = 315_576_000_000


def canonical_duration_exists(text: str) -> bool:
    """Whether ``text`` has MessageToDict's Duration shape within Duration's range."""
    found = _CANONICAL_DURATION.fullmatch(text)
    return found is not None and int(found.group(1)) <= _DURATION_SECONDS_MAX


def generic_wkt_check(message_type: descriptor.Descriptor) -> ValueCheck:
    """Timestamp, Duration, FieldMask: ParseDict hands the value to ``FromJsonString``; so do we."""
    message_class = message_factory.GetMessageClass(message_type)
    name = message_type.name
    canonical = {
        "google.protobuf.Timestamp": canonical_timestamp_exists,
        "google.protobuf.Duration": canonical_duration_exists,
    }.get(message_type.full_name)

    def check_generic(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
        if depth + 1 > MAX_DEPTH:
            return f": nested deeper than {MAX_DEPTH} messages"
        if kind != "string_value":
            return not_kind(f"a {name} string", kind)
        if canonical is not None and canonical(value.string_value):
            return None
        try:
            message_class().FromJsonString(value.string_value)  # type: ignore[attr-defined]
        except (ValueError, TypeError) as error:
            return f": not a {name}: {str(error)[:120]}"
        return None

    return check_generic


def fallback_check(message_type: descriptor.Descriptor) -> ValueCheck:
    """``json_format`` decides a subtree (Any, Struct, Value, ListValue, rare shapes), at the right depth."""
    message_class = message_factory.GetMessageClass(message_type)
    name = message_type.full_name

    def check_exactly(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
        try:
            data = json_format.MessageToDict(value)
        except ValueError:
            return ": holds a non-finite number, which JSON cannot carry"
        try:
            json_format.ParseDict(data, message_class(), max_recursion_depth=MAX_DEPTH - depth)
        except (json_format.ParseError, ValueError, TypeError, KeyError, AttributeError) as error:
            return f": not a {name}: {str(error)[:120]}"
        return None

    return check_exactly
