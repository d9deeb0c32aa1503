"""JSON Schemas of protobuf messages as the edge reads and writes them (ProtoJSON).

Used by :mod:`gateway_rest.openapi`. Messages and enums become components keyed by their
full name and are referenced with ``$ref``, so recursive messages are fine. Well-known
types are inlined in their JSON forms (Timestamp as an RFC 3339 string, wrappers as a
nullable scalar and so on). Property names are the fields' ``json_name``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor, descriptor_pb2

FD = descriptor.FieldDescriptor
Schema = dict[str, Any]

HTTP_BODY = "google.api.HttpBody"
STATUS = "google.rpc.Status"
ANY = "google.protobuf.Any"
_FIELD_BEHAVIOR: Any = field_behavior_pb2.field_behavior
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_INPUT_ONLY = field_behavior_pb2.INPUT_ONLY
REQUIRED = field_behavior_pb2.REQUIRED

_INT64 = {FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64}
_UINT64 = {FD.TYPE_UINT64, FD.TYPE_FIXED64}
_INT32 = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
_UINT32 = {FD.TYPE_UINT32, FD.TYPE_FIXED32}

DURATION_PATTERN = r"^-?\d+(\.\d+)?s$"
_WKT: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": 'A duration in seconds with an "s" suffix, such as "1.5s".',
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": 'Comma-separated field paths in lowerCamelCase, such as "displayName,labels".',
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "description": "An empty JSON object."},
    "google.protobuf.DoubleValue": {"type": ["number", "null"], "format": "double"},
    "google.protobuf.FloatValue": {"type": ["number", "null"], "format": "float"},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "uint64"},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "format": "byte"},
}
# Message types a query parameter or path variable can carry as one text value.
TEXT_WKT = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
    | {name for name in _WKT if name.endswith("Value") and name != "google.protobuf.Value"}
)


def ref(name: str) -> Schema:
    """A ``$ref`` to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def is_map(field: descriptor.FieldDescriptor) -> bool:
    """The field is a ``map<K, V>``."""
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def behaviors(field: descriptor.FieldDescriptor) -> set[int]:
    """The field's ``google.api.field_behavior`` values."""
    options = field.GetOptions()
    return set(options.Extensions[_FIELD_BEHAVIOR])


def summary_of(text: str) -> str:
    """The first sentence of a comment's first paragraph."""
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    head, dot, _ = paragraph.partition(". ")
    return head + dot.strip() if dot else paragraph


class Comments:
    """Leading comments of the declarations in a descriptor set, by full name.

    Fields are keyed ``<message>.<field>``, enum values ``<enum>.<value>`` and methods
    ``<service>.<method>``.
    """

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self._by_name: dict[str, str] = {}
        for file in files:
            by_path = {
                tuple(location.path): location.leading_comments
                for location in file.source_code_info.location
                if location.leading_comments.strip()
            }
            prefix = file.package + "." if file.package else ""
            for index, message in enumerate(file.message_type):
                self._message(by_path, (4, index), prefix + message.name, message)
            for index, enum in enumerate(file.enum_type):
                self._enum(by_path, (5, index), prefix + enum.name, enum)
            for index, service in enumerate(file.service):
                name = prefix + service.name
                self._put(name, by_path.get((6, index)))
                for number, method in enumerate(service.method):
                    self._put(f"{name}.{method.name}", by_path.get((6, index, 2, number)))

    def get(self, key: str) -> str:
        """The comment, dedented and stripped; ``""`` when there is none."""
        return self._by_name.get(key, "")

    def _put(self, key: str, text: str | None) -> None:
        if text:
            self._by_name[key] = textwrap.dedent(text).strip()

    def _message(
        self,
        by_path: dict[tuple[int, ...], str],
        path: tuple[int, ...],
        name: str,
        proto: descriptor_pb2.DescriptorProto,
    ) -> None:
        self._put(name, by_path.get(path))
        for index, field in enumerate(proto.field):
            self._put(f"{name}.{field.name}", by_path.get((*path, 2, index)))
        for index, nested in enumerate(proto.nested_type):
            self._message(by_path, (*path, 3, index), f"{name}.{nested.name}", nested)
        for index, enum in enumerate(proto.enum_type):
            self._enum(by_path, (*path, 4, index), f"{name}.{enum.name}", enum)

    def _enum(
        self,
        by_path: dict[tuple[int, ...], str],
        path: tuple[int, ...],
        name: str,
        proto: descriptor_pb2.EnumDescriptorProto,
    ) -> None:
        self._put(name, by_path.get(path))
        for index, value in enumerate(proto.value):
            self._put(f"{name}.{value.name}", by_path.get((*path, 2, index)))


class SchemaRegistry:
    """Builds schemas and collects the components they refer to."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments
        self._components: dict[str, Schema] = {}
        self._pending: dict[str, descriptor.Descriptor | descriptor.EnumDescriptor] = {}
        self._built: dict[str, Schema] = {}
        self._optionals: dict[str, frozenset[str]] = {}

    def message(self, message: descriptor.Descriptor) -> Schema:
        """The schema of a message value: a well-known type inline, else a ``$ref``."""
        name = message.full_name
        if name in _WKT:
            return dict(_WKT[name])
        if name not in self._components:
            self._pending[name] = message
        return ref(name)

    def enum(self, enum: descriptor.EnumDescriptor) -> Schema:
        """The schema of an enum value (a ``$ref``); ``NullValue`` is JSON ``null``."""
        if enum.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        if enum.full_name not in self._components:
            self._pending[enum.full_name] = enum
        return ref(enum.full_name)

    def value(self, field: descriptor.FieldDescriptor) -> Schema:
        """The schema of one value of a field (one element if it is repeated)."""
        kind = field.type
        if kind == FD.TYPE_MESSAGE or kind == FD.TYPE_GROUP:
            assert field.message_type is not None  # a message field has its type
            return self.message(field.message_type)
        if kind == FD.TYPE_ENUM:
            assert field.enum_type is not None  # an enum field has its type
            return self.enum(field.enum_type)
        if kind in _INT64:
            return {"type": "string", "format": "int64"}
        if kind in _UINT64:
            return {"type": "string", "format": "uint64"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32:
            return {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
        if kind == FD.TYPE_DOUBLE:
            return {"type": "number", "format": "double"}
        if kind == FD.TYPE_FLOAT:
            return {"type": "number", "format": "float"}
        if kind == FD.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FD.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        return {"type": "string"}

    def field(self, field: descriptor.FieldDescriptor, *, annotate: bool = True) -> Schema:
        """The schema of a field: maps become objects, repeated fields arrays.

        With ``annotate``, the field's comment becomes the description and its field
        behaviour ``readOnly``/``writeOnly``.
        """
        if is_map(field):
            entry = field.message_type
            assert entry is not None  # a map field has its entry type
            schema: Schema = {"type": "object", "additionalProperties": self.value(entry.fields_by_name["value"])}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value(field)}
        else:
            schema = self.value(field)
        if not annotate:
            return schema
        description = "\n\n".join(t for t in (self.field_description(field), schema.get("description", "")) if t)
        if description:
            schema["description"] = description
        marks = behaviors(field)
        if _OUTPUT_ONLY in marks:
            schema["readOnly"] = True
        if _INPUT_ONLY in marks:
            schema["writeOnly"] = True
        if field.GetOptions().deprecated:
            schema["deprecated"] = True
        return schema

    def field_description(self, field: descriptor.FieldDescriptor) -> str:
        """The field's comment, with notes on presence and oneof membership."""
        parts = [self.comments.get(field.full_name)]
        oneof = field.containing_oneof
        if oneof is not None and field.name not in self._synthetic_optional(field.containing_type):
            others = ", ".join(f"`{f.json_name}`" for f in oneof.fields)
            parts.append(f"Member of the oneof `{oneof.name}`: at most one of {others} may be set.")
        elif oneof is not None:
            parts.append("Optional: omitted from responses when unset.")
        return "\n\n".join(p for p in parts if p)

    def message_schema(self, message: descriptor.Descriptor) -> Schema:
        """The full object schema of a message (cached; treat as read-only)."""
        built = self._built.get(message.full_name)
        if built is not None:
            return built
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.fields:
            properties[field.json_name] = self.field(field)
            if REQUIRED in behaviors(field):
                required.append(field.json_name)
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        description = self.comments.get(message.full_name)
        if description:
            schema["description"] = description
        if message.full_name == ANY:
            schema = any_schema()
        self._built[message.full_name] = schema
        return schema

    def without(self, message: descriptor.Descriptor, paths: Iterable[str]) -> Schema:
        """The schema of a message without some fields (dotted proto paths): those a path binds.

        Returns a ``$ref`` when nothing is removed, else an inline schema.
        """
        groups: dict[str, list[str]] = {}
        for path in paths:
            head, _, rest = path.partition(".")
            groups.setdefault(head, []).append(rest)
        if not groups or message.full_name in _WKT:
            return self.message(message)
        base = self.message_schema(message)
        properties = dict(base["properties"])
        required = list(base.get("required", ()))
        removed: list[str] = []
        for name, rests in groups.items():
            field = message.fields_by_name.get(name)
            if field is None:
                continue
            if "" in rests or field.message_type is None or field.is_repeated:
                properties.pop(field.json_name, None)
                if field.json_name in required:
                    required.remove(field.json_name)
                removed.append(field.json_name)
            else:
                inner = self.without(field.message_type, rests)
                description = properties[field.json_name].get("description")
                properties[field.json_name] = {**inner, **({"description": description} if description else {})}
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if removed:
            note = f"`{message.full_name}` without {', '.join(f'`{r}`' for r in removed)}, which the path sets."
        else:
            note = f"`{message.full_name}`; the path sets some of the fields inside."
        schema["description"] = "\n\n".join(p for p in (base.get("description", ""), note) if p)
        return schema

    def add_component(self, name: str, schema: Schema) -> None:
        """Set a component by hand (it wins over one built from a descriptor)."""
        self._components[name] = schema
        self._pending.pop(name, None)

    def components(self) -> dict[str, Schema]:
        """Every component referred to so far, built, sorted by name."""
        while self._pending:
            name, item = self._pending.popitem()
            if name in self._components:
                continue
            if isinstance(item, descriptor.EnumDescriptor):
                self._components[name] = self._enum_schema(item)
            else:
                self._components[name] = self.message_schema(item)
        return dict(sorted(self._components.items()))

    def _synthetic_optional(self, message: descriptor.Descriptor | None) -> frozenset[str]:
        # proto3 `optional` fields sit in a synthetic oneof each; only the raw proto says which.
        if message is None:
            return frozenset()
        cached = self._optionals.get(message.full_name)
        if cached is None:
            proto = descriptor_pb2.DescriptorProto()
            message.CopyToProto(proto)
            cached = frozenset(f.name for f in proto.field if f.proto3_optional)
            self._optionals[message.full_name] = cached
        return cached

    def _enum_schema(self, enum: descriptor.EnumDescriptor) -> Schema:
        names = [value.name for value in enum.values]
        schema: Schema = {"type": "string", "enum": names}
        lines = [self.comments.get(enum.full_name)]
        values = [
            f"- `{value.name}`: {summary_of(self.comments.get(f'{enum.full_name}.{value.name}'))}"
            for value in enum.values
            if self.comments.get(f"{enum.full_name}.{value.name}")
        ]
        if values:
            lines.append("\n".join(values))
        lines.append("Requests may also give the value's number.")
        schema["description"] = "\n\n".join(line for line in lines if line)
        return schema


def any_schema() -> Schema:
    """The ``google.protobuf.Any`` component: ``@type`` and the message's fields."""
    return {
        "type": "object",
        "description": "A message of any type: `@type` names it, the other properties are its fields.",
        "properties": {"@type": {"type": "string", "description": "type.googleapis.com/<full message name>"}},
        "required": ["@type"],
        "additionalProperties": True,
    }


def status_schema() -> Schema:
    """The ``google.rpc.Status`` error body (``details`` refer to the ``Any`` component)."""
    return {
        "type": "object",
        "description": "The error body: a `google.rpc.Status`.",
        "properties": {
            "code": {
                "type": "integer",
                "format": "int32",
                "description": "The gRPC status code (3 = INVALID_ARGUMENT).",
            },
            "message": {"type": "string", "description": "A developer-facing error message in English."},
            "details": {
                "type": "array",
                "items": ref(ANY),
                "description": "Machine-readable details, such as `google.rpc.BadRequest`.",
            },
        },
        "required": ["code", "message"],
    }
