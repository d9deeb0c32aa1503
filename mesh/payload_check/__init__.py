"""A fast, exact check that a ``Struct`` is the proto3 JSON (ProtoJSON) of a message.

The event store checks every appended payload against the message its event type declares.
``json_format.ParseDict`` gives the verdict but costs tens of microseconds in pure Python, most
of it building a message nobody keeps and, before that, ``MessageToDict`` copying the ``Struct``.
:func:`checker_for` compiles, once per message type, a table-driven walker over the ``Struct``'s
``Value`` messages that answers the same question without building anything: ``None`` when
``ParseDict(..., ignore_unknown_fields=False)`` would accept the payload, else a short problem
with its field path (``agent.labels[team]: must be a string, not a number``).

"The same verdict" includes ParseDict's corners, on purpose: it accepts ``displayName`` and
``display_name`` alike, ``null`` for any field (unset), numbers as integral floats or decimal
strings (``"1e3"`` too), ``true`` for a double, an enum as its name or any int32 (open enums), and
``""`` or ``[]`` for a message (it iterates them as empty objects). The well-known types go through
``json_format`` on their subtree only (Timestamp/Duration/FieldMask through ``FromJsonString``,
exactly what ParseDict calls); wrappers take the scalar path. One deliberate difference: a
``Struct`` holding a NaN or infinite number, which ``MessageToDict`` cannot even render, is refused
here instead of raising.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import descriptor, descriptor_pool, struct_pb2

from mesh.payload_check.values import (
    FALLBACK_WKT,
    GENERIC_WKT,
    INT_RANGES,
    MAX_DEPTH,
    VALUE_TYPE,
    ValueCheck,
    check_bool,
    check_bytes,
    check_double,
    check_float,
    check_string,
    fallback_check,
    generic_wkt_check,
    integer_check,
    map_key_check,
    not_kind,
)

__all__ = ["MAX_DEPTH", "MAX_PROBLEM", "PayloadChecker", "checker_for"]

MAX_PROBLEM = 300
"""Problems are cut to this many characters (keys and values in them come from the caller)."""


@dataclasses.dataclass(slots=True)
class _Field:
    """How to check one key of a message's JSON object."""

    check: ValueCheck
    oneof: int | None
    child: _Message | None  # a plain (non-WKT) singular message: walked directly
    simple_kind: str | None  # the only kind a simple scalar (string, bool) accepts: no call needed
    plain_string: bool = False  # a string outside any oneof: a non-empty string_value settles it
    items: ItemsCheck | None = None  # a repeated field: a non-empty list_value goes straight to its items


class _Message:
    """The compiled checker of one (non-WKT) message type; filled after creation so types may recurse."""

    __slots__ = ("fields", "full_name")

    def __init__(self, full_name: str) -> None:
        self.full_name = full_name
        self.fields: dict[str, _Field] = {}

    def check_fields(self, fields: Mapping[str, struct_pb2.Value], depth: int) -> str | None:
        """The problem of a JSON object (the ``fields`` of a ``Struct``) at ``depth``, or ``None``."""
        if depth > MAX_DEPTH:
            return f": nested deeper than {MAX_DEPTH} messages"
        table = self.fields
        oneofs: set[int] | None = None
        for key in fields:  # upb maps: iterating keys and indexing beats .items() (a Python mixin) by far
            field = table.get(key)
            if field is None:
                return f".{key}: {self.full_name} has no such field"
            value = fields[key]
            # Fast paths that spare WhichOneof: a non-empty string_value (or a non-empty object) can only
            # mean that kind, since the other members of the oneof read as their defaults.
            if field.plain_string and value.string_value:
                continue
            child = field.child
            if child is not None and field.oneof is None:
                entries = value.struct_value.fields
                if entries:
                    problem = child.check_fields(entries, depth + 1)
                    if problem is not None:
                        return f".{key}{problem}"
                    continue
            check_items = field.items
            if check_items is not None:
                items = value.list_value.values
                if items:
                    problem = check_items(items, depth)
                    if problem is not None:
                        return f".{key}{problem}"
                    continue
            kind = value.WhichOneof("kind")
            if kind is None or kind == "null_value":
                continue  # null leaves a field unset (a Value field becomes null_value: fine too)
            if field.oneof is not None:
                if oneofs is None:
                    oneofs = {field.oneof}
                elif field.oneof in oneofs:
                    return f".{key}: another member of its oneof is already set"
                else:
                    oneofs.add(field.oneof)
            if kind == field.simple_kind:
                continue
            if child is not None and kind == "struct_value":
                problem = child.check_fields(value.struct_value.fields, depth + 1)
            else:
                problem = field.check(value, kind, depth)
            if problem is not None:
                return f".{key}{problem}"
        return None

    def check_value(self, value: struct_pb2.Value, kind: str, depth: int) -> str | None:
        """The check of this message as a value: an object, or ``""``/``[]`` (ParseDict iterates them as empty)."""
        if kind == "struct_value":
            return self.check_fields(value.struct_value.fields, depth + 1)
        if (kind == "string_value" and not value.string_value) or (
            kind == "list_value" and not value.list_value.values
        ):
            return None if depth + 1 <= MAX_DEPTH else f": nested deeper than {MAX_DEPTH} messages"
        return not_kind("an object", kind)


class _ExactMessage(_Message):
    """A message that ``json_format`` checks whole (see :meth:`_Compiler._plain`)."""

    __slots__ = ("_exact",)

    def __init__(self, message_descriptor: descriptor.Descriptor) -> None:
        super().__init__(message_descriptor.full_name)
        self._exact = fallback_check(message_descriptor)

    def check_fields(self, fields: Mapping[str, struct_pb2.Value], depth: int) -> str | None:
        """ParseDict's verdict on the object, this message being at ``depth``."""
        value = struct_pb2.Value()
        value.struct_value.SetInParent()
        for key, item in fields.items():
            value.struct_value.fields[key].CopyFrom(item)
        return self._exact(value, "struct_value", depth - 1)


class PayloadChecker:
    """The compiled check of one message type's ProtoJSON; call it with a ``Struct``."""

    __slots__ = ("_root", "full_name")

    def __init__(self, message_descriptor: descriptor.Descriptor) -> None:
        self.full_name: str = message_descriptor.full_name
        self._root = _Compiler().message(message_descriptor)

    def __call__(self, data: struct_pb2.Struct) -> str | None:
        """``None`` when ``data`` is the proto3 JSON of the message, else the first problem with its path.

        Args:
            data: the payload, a JSON object as a ``Struct``.

        Returns:
            ``None`` or ``"<field path>: <problem>"`` (path in the JSON's own keys).

        """
        problem = self._root(data.fields, 1)
        if problem is None:
            return None
        problem = problem[1:] if problem[0] == "." else problem.removeprefix(": ")
        return problem if len(problem) <= MAX_PROBLEM else problem[: MAX_PROBLEM - 1] + "…"


@functools.cache
def checker_for(message_descriptor: descriptor.Descriptor) -> PayloadChecker:
    """The checker of a message type, compiled on first use and cached."""
    return PayloadChecker(message_descriptor)


class _Compiler:
    """Builds the checkers of one message type and of every type it reaches."""

    def __init__(self) -> None:
        self._messages: dict[str, _Message] = {}
        self._enum_names = _custom_enum_names_extension()

    def message(self, message_descriptor: descriptor.Descriptor) -> Callable[[Any, int], str | None]:
        """The fields checker of a root message (a well-known type as root goes to ``json_format``)."""
        if _is_wkt(message_descriptor):
            return _ExactMessage(message_descriptor).check_fields
        return self._plain(message_descriptor).check_fields

    def _plain(self, message_descriptor: descriptor.Descriptor) -> _Message:
        found = self._messages.get(message_descriptor.full_name)
        if found is not None:
            return found
        if message_descriptor.is_extendable or _keys_collide_with_oneofs(message_descriptor):
            # "[ext.name]" keys, or keys that ParseDict's bookkeeping would mistake for oneof names:
            # rare enough that json_format decides for the whole message.
            exact = _ExactMessage(message_descriptor)
            self._messages[message_descriptor.full_name] = exact
            return exact
        compiled = _Message(message_descriptor.full_name)
        self._messages[message_descriptor.full_name] = compiled
        oneof_index = {oneof.name: index for index, oneof in enumerate(message_descriptor.oneofs)}
        for field in message_descriptor.fields:
            compiled.fields[field.name] = self._field(field, oneof_index)
        for field in message_descriptor.fields:  # ParseDict looks json_name up first
            compiled.fields[field.json_name] = compiled.fields[field.name]
        return compiled

    def _field(self, field: descriptor.FieldDescriptor, oneof_index: dict[str, int]) -> _Field:
        oneof = field.containing_oneof
        oneof_number = None if oneof is None else oneof_index[oneof.name]
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            return _Field(self._map(message_type), oneof_number, None, None)
        element, simple_kind = self._element(field)
        if field.is_repeated:
            check_list, check_items = _repeated(element, _null_item_allowed(field), simple_kind == "string_value")
            return _Field(check_list, oneof_number, None, None, items=check_items)
        child = None
        if message_type is not None and not _is_wkt(message_type):
            child = self._plain(message_type)
        plain_string = simple_kind == "string_value" and oneof is None
        return _Field(element, oneof_number, child, simple_kind, plain_string)

    def _element(self, field: descriptor.FieldDescriptor) -> tuple[ValueCheck, str | None]:
        """The check of one value of the field (an item when repeated), and its simple kind if any."""
        message_type = field.message_type
        if message_type is not None:
            if _is_wrapper(message_type):
                return self._element(message_type.fields_by_name["value"])
            if message_type.full_name in GENERIC_WKT:
                return generic_wkt_check(message_type), None
            if message_type.full_name in FALLBACK_WKT:
                return fallback_check(message_type), None
            return self._plain(message_type).check_value, None
        return self._scalar(field)

    def _scalar(self, field: descriptor.FieldDescriptor) -> tuple[ValueCheck, str | None]:
        cpp_type = field.cpp_type
        if cpp_type == descriptor.FieldDescriptor.CPPTYPE_STRING:
            if field.type == descriptor.FieldDescriptor.TYPE_BYTES:
                return check_bytes, None
            return check_string, "string_value"
        if cpp_type == descriptor.FieldDescriptor.CPPTYPE_BOOL:
            return check_bool, "bool_value"
        if cpp_type in INT_RANGES:
            return integer_check(*INT_RANGES[cpp_type]), None
        if cpp_type == descriptor.FieldDescriptor.CPPTYPE_DOUBLE:
            return check_double, None
        if cpp_type == descriptor.FieldDescriptor.CPPTYPE_FLOAT:
            return check_float, None
        if cpp_type == descriptor.FieldDescriptor.CPPTYPE_ENUM and field.enum_type is not None:
            return self._enum(field.enum_type), None
        raise TypeError(f"{field.full_name}: unexpected field type {field.type}")  # pragma: no cover

    def _enum(self, enum_type: descriptor.EnumDescriptor) -> ValueCheck:
        names = {value.name for value in enum_type.values} | self._custom_names(enum_type)
        numbers = {value.number for value in enum_type.values}
        by_number = enum_type.values_by_number
        closed = enum_type.is_closed
        low, high = INT_RANGES[descriptor.FieldDescriptor.CPPTYPE_INT32]
        full_name = enum_type.full_name

        def check_enum(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
            if kind == "string_value":
                text = value.string_value
                if text in names:
                    return None
                try:
                    number = int(text)
                except ValueError:
                    return f": {text!r} is not a {full_name} name"
            elif kind == "number_value":
                try:
                    number = int(value.number_value)
                except (ValueError, OverflowError):
                    return f": {value.number_value} is not a {full_name} number"
            elif kind == "bool_value":
                number = int(value.bool_value)  # ParseDict takes true as 1
            else:
                return not_kind(f"a {full_name} name or number", kind)
            if number in numbers:
                return None
            if not low <= number <= high and by_number.get(number) is not None:
                return None  # upb's values_by_number keys on the low 32 bits: ParseDict takes it as that value
            if closed:
                return f": {number} is not a {full_name} number"
            if not low <= number <= high:
                return f": {number} is out of range for an enum"
            return None

        return check_enum

    def _custom_names(self, enum_type: descriptor.EnumDescriptor) -> set[str]:
        """Custom JSON names of enum values (``pb.enumvalue.json``), which ParseDict honours when loaded."""
        if self._enum_names is None:
            return set()
        found = set()
        for value in enum_type.values:
            options = value.GetOptions()
            if options.HasExtension(self._enum_names):
                option = options.Extensions[self._enum_names]
                if option.HasField("string"):
                    found.add(option.string)
        return found

    def _map(self, entry: descriptor.Descriptor) -> ValueCheck:
        key_field = entry.fields_by_name["key"]
        value_field = entry.fields_by_name["value"]
        check_key = map_key_check(key_field)
        check_item, _ = self._element(value_field)
        null_allowed = _null_item_allowed(value_field)

        def check_map(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
            if kind != "struct_value":
                return not_kind("an object (a map)", kind)
            entries = value.struct_value.fields
            for key in entries:
                item = entries[key]
                problem = check_key(key)
                if problem is not None:
                    return f"[{key}]{problem}"
                item_kind = item.WhichOneof("kind")
                if item_kind is None or item_kind == "null_value":
                    if null_allowed:
                        continue
                    return f"[{key}]: must not be null"
                problem = check_item(item, item_kind, depth)
                if problem is not None:
                    return f"[{key}]{problem}"
            return None

        return check_map


ItemsCheck = Callable[[Any, int], str | None]  # (the values of a non-empty list, depth) → problem


def _repeated(check_item: ValueCheck, null_allowed: bool, strings: bool) -> tuple[ValueCheck, ItemsCheck]:
    """The check of a repeated field's value, and of its items alone (for the walker's fast path)."""

    def check_items(items: Any, depth: int) -> str | None:
        for index in range(len(items)):  # indexing a upb repeated field beats iterating it (a Python mixin)
            item = items[index]
            if strings and item.string_value:
                continue
            item_kind = item.WhichOneof("kind")
            if item_kind is None or item_kind == "null_value":
                if null_allowed:
                    continue
                return f"[{index}]: must not be null"
            problem = check_item(item, item_kind, depth)
            if problem is not None:
                return f"[{index}]{problem}"
        return None

    def check_list(value: struct_pb2.Value, kind: str, depth: int) -> str | None:
        if kind != "list_value":
            return not_kind("a list", kind)
        return check_items(value.list_value.values, depth)

    return check_list, check_items


def _is_wrapper(message_type: descriptor.Descriptor) -> bool:
    return bool(message_type.file.name == "google/protobuf/wrappers.proto")


def _is_wkt(message_type: descriptor.Descriptor) -> bool:
    full_name = message_type.full_name
    return full_name in GENERIC_WKT or full_name in FALLBACK_WKT or _is_wrapper(message_type)


def _keys_collide_with_oneofs(message_type: descriptor.Descriptor) -> bool:
    names = {field.name for field in message_type.fields} | {field.json_name for field in message_type.fields}
    return not names.isdisjoint(oneof.name for oneof in message_type.oneofs)


def _null_item_allowed(field: descriptor.FieldDescriptor) -> bool:
    """ParseDict refuses null items in lists and maps, except of ``google.protobuf.Value``."""
    return field.message_type is not None and field.message_type.full_name == VALUE_TYPE


def _custom_enum_names_extension() -> Any:
    try:
        return descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return None
