"""Vendor ``buf/validate/validate.proto`` (protovalidate) from its PyPI wheel.

The BSR (``buf export buf.build/bufbuild/protovalidate``) is out of reach
here, and the protovalidate wheel ships the schema only as a serialized
``FileDescriptorProto`` inside its generated module. This tool downloads the
pinned wheel with pip (or takes one given with ``--wheel``), pulls that
descriptor out of the module source without importing it, and renders it back
as ``.proto`` text under ``third_party/protovalidate`` so protoc and buf can
compile our contracts offline. The descriptor carries no comments, so the
rendered file has none; every message, field, option and CEL rule is there.

Usage: python tools/vendor_protovalidate.py [--wheel FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    text_format,
    timestamp_pb2,
)
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Pinned so a re-run reproduces the vendored file; bump deliberately.
VERSION = "2.1.0"
PROTO_NAME = "buf/validate/validate.proto"
FDP = descriptor_pb2.FieldDescriptorProto
MAX_FIELD_NUMBER = 536_870_911

SCALARS = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}
LABELS = {FDP.LABEL_OPTIONAL: "optional", FDP.LABEL_REPEATED: "repeated", FDP.LABEL_REQUIRED: "required"}


def download_wheel(directory: pathlib.Path) -> pathlib.Path:
    """Fetch the pinned protovalidate wheel (no dependencies) into ``directory``."""
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    subprocess.run([*pip, "-d", str(directory), f"protovalidate=={VERSION}"], check=True)
    return next(directory.glob("protovalidate-*.whl"))


def descriptor_from_wheel(wheel: pathlib.Path) -> descriptor_pb2.FileDescriptorProto:
    """The ``FileDescriptorProto`` of validate.proto, read from the wheel's generated module.

    Raises:
        SystemExit: the wheel holds no module with a serialized validate.proto.

    """
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(("buf/validate/validate_pb.py", "buf/validate/validate_pb2.py")):
                source = archive.read(name).decode()
                for node in ast.walk(ast.parse(source)):
                    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
                        fdp = descriptor_pb2.FileDescriptorProto.FromString(node.value)
                        if fdp.name == PROTO_NAME:
                            return fdp
    raise SystemExit(f"{wheel} holds no serialized {PROTO_NAME}")


class Renderer:
    """Renders one ``FileDescriptorProto`` as .proto source."""

    def __init__(self, fdp: descriptor_pb2.FileDescriptorProto) -> None:
        self.fdp = fdp
        self.pool = descriptor_pool.DescriptorPool()
        for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
            self.pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
        self.pool.Add(fdp)
        # The file's own extensions of the option messages, by (extendee, number): custom options set in the
        # file arrive as unknown fields of the standard option messages and are decoded through these.
        self.extensions = {(ext.extendee.lstrip("."), ext.number): ext for ext in fdp.extension}
        self.lines: list[str] = []

    def render(self) -> str:
        """The whole file."""
        fdp = self.fdp
        self.lines = [
            "// Vendored by tools/vendor_protovalidate.py from the protovalidate "
            f"{VERSION} wheel's descriptor. DO NOT EDIT.",
            "",
            f'syntax = "{fdp.syntax or "proto2"}";',
            "",
            f"package {fdp.package};",
            "",
        ]
        self.lines += [f'import "{dependency}";' for dependency in fdp.dependency]
        self.lines.append("")
        self.lines += [f"option {name} = {value};" for name, value in self._plain_options(fdp.options)]
        for message in fdp.message_type:
            self.lines.append("")
            self._message(message, 0)
        for enum in fdp.enum_type:
            self.lines.append("")
            self._enum(enum, 0)
        extendees: dict[str, list[descriptor_pb2.FieldDescriptorProto]] = {}
        for ext in fdp.extension:
            extendees.setdefault(ext.extendee, []).append(ext)
        for extendee, fields in extendees.items():
            self.lines += ["", f"extend {extendee} {{"]
            for field in fields:
                self.lines.append("  " + self._field(field, with_label=True))
            self.lines.append("}")
        return "\n".join(self.lines) + "\n"

    def _message(self, message: descriptor_pb2.DescriptorProto, depth: int) -> None:
        pad = "  " * depth
        self.lines.append(f"{pad}message {message.name} {{")
        for name, value in self._all_options(message.options, "google.protobuf.MessageOptions"):
            self.lines.append(f"{pad}  option {name} = {value};")
        for nested in message.nested_type:
            self._message(nested, depth + 1)
        for enum in message.enum_type:
            self._enum(enum, depth + 1)
        real_oneofs = {f.oneof_index for f in message.field if f.HasField("oneof_index") and not f.proto3_optional}
        emitted: set[int] = set()
        # Declaration order is field order; a oneof's fields are contiguous, so the block goes at its first field.
        for field in message.field:
            if not (field.HasField("oneof_index") and field.oneof_index in real_oneofs):
                self.lines.append(f"{pad}  {self._field(field, with_label=True)}")
            elif field.oneof_index not in emitted:
                emitted.add(field.oneof_index)
                self._oneof(message, field.oneof_index, depth + 1)
        for ext_range in message.extension_range:
            end = "max" if ext_range.end - 1 >= MAX_FIELD_NUMBER else str(ext_range.end - 1)
            self.lines.append(f"{pad}  extensions {ext_range.start} to {end};")
        for reserved in message.reserved_range:
            last = reserved.end - 1  # message reserved ranges are end-exclusive
            span = str(reserved.start) if last == reserved.start else f"{reserved.start} to {last}"
            self.lines.append(f"{pad}  reserved {span};")
        for name in message.reserved_name:
            self.lines.append(f'{pad}  reserved "{name}";')
        self.lines.append(f"{pad}}}")

    def _oneof(self, message: descriptor_pb2.DescriptorProto, index: int, depth: int) -> None:
        pad = "  " * depth
        self.lines.append(f"{pad}oneof {message.oneof_decl[index].name} {{")
        for name, value in self._all_options(message.oneof_decl[index].options, "google.protobuf.OneofOptions"):
            self.lines.append(f"{pad}  option {name} = {value};")
        for field in message.field:
            if field.HasField("oneof_index") and field.oneof_index == index:
                self.lines.append(f"{pad}  {self._field(field, with_label=False)}")
        self.lines.append(f"{pad}}}")

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto, depth: int) -> None:
        pad = "  " * depth
        self.lines.append(f"{pad}enum {enum.name} {{")
        for name, value in self._all_options(enum.options, "google.protobuf.EnumOptions"):
            self.lines.append(f"{pad}  option {name} = {value};")
        for enum_value in enum.value:
            options = self._bracket(self._all_options(enum_value.options, "google.protobuf.EnumValueOptions"))
            self.lines.append(f"{pad}  {enum_value.name} = {enum_value.number}{options};")
        for reserved in enum.reserved_range:  # enum reserved ranges are inclusive
            span = str(reserved.start) if reserved.end == reserved.start else f"{reserved.start} to {reserved.end}"
            self.lines.append(f"{pad}  reserved {span};")
        for name in enum.reserved_name:
            self.lines.append(f'{pad}  reserved "{name}";')
        self.lines.append(f"{pad}}}")

    def _field(self, field: descriptor_pb2.FieldDescriptorProto, *, with_label: bool) -> str:
        type_name = SCALARS.get(field.type, field.type_name)
        label = f"{LABELS[field.label]} " if with_label else ""
        options = list(self._all_options(field.options, "google.protobuf.FieldOptions"))
        if field.HasField("default_value"):
            default = field.default_value
            quoted = field.type in (FDP.TYPE_STRING, FDP.TYPE_BYTES)
            options.insert(0, ("default", f'"{_escape(default)}"' if quoted else default))
        if field.json_name and field.json_name != _camel(field.name):
            options.insert(0, ("json_name", f'"{field.json_name}"'))
        return f"{label}{type_name} {field.name} = {field.number}{self._bracket(options)};"

    @staticmethod
    def _bracket(options: list[tuple[str, str]]) -> str:
        if not options:
            return ""
        return " [" + ", ".join(f"{name} = {value}" for name, value in options) + "]"

    def _all_options(self, options: Message, options_type: str) -> list[tuple[str, str]]:
        return [*self._plain_options(options), *self._custom_options(options, options_type)]

    @staticmethod
    def _plain_options(options: Message) -> Iterator[tuple[str, str]]:
        for descriptor, value in options.ListFields():
            if descriptor.type == FDP.TYPE_STRING:
                yield descriptor.name, f'"{_escape(value)}"'
            elif descriptor.type == FDP.TYPE_BOOL:
                yield descriptor.name, str(value).lower()
            elif descriptor.type == FDP.TYPE_ENUM and descriptor.enum_type is not None:
                yield descriptor.name, descriptor.enum_type.values_by_number[value].name
            else:
                yield descriptor.name, str(value)

    def _custom_options(self, options: Message, options_type: str) -> Iterator[tuple[str, str]]:
        unknowns = UnknownFieldSet(options)
        for unknown in (unknowns[index] for index in range(len(unknowns))):
            ext = self.extensions.get((options_type, unknown.field_number))
            if ext is None or ext.type != FDP.TYPE_MESSAGE:
                raise SystemExit(f"cannot render option {unknown.field_number} of {options_type}")
            value_class = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(ext.type_name.lstrip(".")))
            value = value_class.FromString(unknown.data)
            body = text_format.MessageToString(value, as_one_line=True, as_utf8=True)
            yield f"({self.fdp.package}.{ext.name})", f"{{{body}}}"


def _escape(text: str) -> str:
    """``text`` as the inside of a .proto string literal."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _camel(name: str) -> str:
    """The json_name protoc gives a field name by default."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def check_round_trip(out: pathlib.Path, expected: descriptor_pb2.FileDescriptorProto) -> None:
    """Compile the rendered file with protoc and require the very descriptor the wheel ships.

    Raises:
        SystemExit: protoc rejected the file or produced a different descriptor.

    """
    import grpc_tools
    from grpc_tools import protoc

    well_known = pathlib.Path(next(iter(grpc_tools.__path__))) / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        descriptor_set = pathlib.Path(scratch) / "validate.binpb"
        args = ["protoc", f"-I{out}", f"-I{well_known}", f"--descriptor_set_out={descriptor_set}", PROTO_NAME]
        if protoc.main(args) != 0:
            raise SystemExit("protoc rejected the rendered validate.proto")
        compiled = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file[0]
    if compiled != expected:
        raise SystemExit("the rendered validate.proto compiles to a different descriptor than the wheel's")


def main() -> int:
    """Download (or take) the wheel, render validate.proto and write it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=pathlib.Path, help="a protovalidate wheel already on disk")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "third_party" / "protovalidate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or download_wheel(pathlib.Path(scratch))
        wheel_name = wheel.name
        expected = descriptor_from_wheel(wheel)
    target = args.out / PROTO_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(Renderer(expected).render())
    check_round_trip(args.out, expected)
    print(f"vendored {target} from {wheel_name} (round trip through protoc checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
