"""Find limits written in proto comments and say which still lack a ``buf.validate`` rule.

A comment such as "1 to 100 characters", "at most 64 characters", "Most agents to return, 1 to 100; 0 means
50", "a UUID4", "up to 1 MiB" or "1 minute to 2 hours" states a limit that a standard protovalidate rule can
check. This tool reads those phrases from the descriptor set's comments, derives the rules they call for, and
compares them with the rules the field carries, both ways: a stated limit without its rule, and a rule whose
limit the comment does not state, are both reported. Output-only fields and response messages are skipped:
clients never send them. Limits that only domain code can check ("at most 400 days" of an interval, "at least
1 hour ahead") are not matched by any phrase here and stay with the services.

Every derived rule is "if set": ``ignore = IGNORE_IF_ZERO_VALUE`` (implied for fields that track presence).
Proto3 cannot tell an unset scalar from zero, partial updates leave fields empty, and requiredness belongs
to ``field_behavior`` and the services.

Usage: python tools/comment_limits.py [--descriptor-set FILE] [--apply]
    --apply writes the missing rules into the .proto sources (then run ``buf format -w``).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

# Importing the option modules first makes the descriptor set's parse decode their extensions.
from buf.validate import validate_pb2
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2, duration_pb2, text_format

# The generated stubs type extensions as plain FieldDescriptors, which the Extensions stub refuses.
_FIELD_RULES: Any = validate_pb2.field
ROOT = pathlib.Path(__file__).resolve().parent.parent
FDP = descriptor_pb2.FieldDescriptorProto
FIELD_RULES = 1159  # (buf.validate.field)
OUTPUT_ONLY = 3  # google.api.FieldBehavior.OUTPUT_ONLY
FIELD_BEHAVIOR = 1052  # (google.api.field_behavior)
# AIP-155 request ids; E.164 numbers are "+", a non-zero digit and at most 14 more digits.
E164 = r"^\+[1-9][0-9]{1,14}$"
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_UNITS = r"(second|minute|hour|day)s?"
_SIZES = {"KiB": 1024, "MiB": 1024 * 1024}
_INTEGERS = {FDP.TYPE_INT32: "int32", FDP.TYPE_INT64: "int64", FDP.TYPE_UINT32: "uint32", FDP.TYPE_UINT64: "uint64"}
_FLOATS = {FDP.TYPE_DOUBLE: "double", FDP.TYPE_FLOAT: "float"}
_CHARACTERS_RANGE = re.compile(rf"\b({_NUMBER}) ?(?:to|–) ?({_NUMBER}) characters")
_CHARACTERS_MAX = re.compile(rf"\b(?:at most|up to) ({_NUMBER}) characters", re.IGNORECASE)
_CHARACTERS_MIN = re.compile(rf"\bat least ({_NUMBER}) characters", re.IGNORECASE)
_SIZE_MAX = re.compile(rf"\b(?:at most|up to) ({_NUMBER}) (KiB|MiB)\b", re.IGNORECASE)
_RANGE = re.compile(rf"(?<![\w.])({_NUMBER}) ?(?:to|–) ?({_NUMBER})(?![\w,.]*\s*(?:[A-Za-z]|%))")
_RANGE_END = re.compile(
    rf"(?<![\w.])({_NUMBER}) ?(?:to|–) ?({_NUMBER})(?=\s*(?:[;,)]|\.(?:\s|$)|$|\s+(?:in order|with)))"
)
_AT_LEAST = re.compile(rf"\bat least ({_NUMBER})(?=\s*(?:[;,)]|\.(?:\s|$)|$))", re.IGNORECASE)
_ITEMS_MAX = re.compile(rf"\b(?:at most|up to) ({_NUMBER}) (?:entries|items|labels|keys|pairs)\b", re.IGNORECASE)
_DURATION_RANGE = re.compile(rf"\b({_NUMBER}) {_UNITS} to ({_NUMBER}) {_UNITS}\b")
_DURATION_MIN = re.compile(rf"\bat least ({_NUMBER}) {_UNITS}\b", re.IGNORECASE)
_DURATION_MAX = re.compile(rf"\bat most ({_NUMBER}) {_UNITS}\b", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a contract, with its comment and where it is declared."""

    full_name: str
    file: str
    path: tuple[int, ...]
    proto: descriptor_pb2.FieldDescriptorProto
    comment: str
    span: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Finding:
    """The rules a field's comment calls for next to the rules it carries."""

    field: Field
    expected: dict[str, str]
    actual: dict[str, str]

    @property
    def missing(self) -> dict[str, str]:
        """Rules the comment states that the field lacks (or carries with another value)."""
        return {key: value for key, value in self.expected.items() if self.actual.get(key) != value}

    @property
    def unstated(self) -> dict[str, str]:
        """Rules the field carries whose limit its comment does not state."""
        return {key: value for key, value in self.actual.items() if key not in self.expected and key != "ignore"}


def contract_fields(descriptor_set: descriptor_pb2.FileDescriptorSet) -> Iterator[Field]:
    """Every client-writable field of every ``vocelio.*`` message that is not a response."""
    for file in descriptor_set.file:
        if not file.package.startswith("vocelio."):
            continue
        locations = {tuple(location.path): location for location in file.source_code_info.location}
        yield from _fields(file, file.message_type, (4,), file.package, locations)


def _fields(
    file: descriptor_pb2.FileDescriptorProto,
    messages: Sequence[descriptor_pb2.DescriptorProto],
    path: tuple[int, ...],
    scope: str,
    locations: dict[tuple[int, ...], descriptor_pb2.SourceCodeInfo.Location],
) -> Iterator[Field]:
    for index, message in enumerate(messages):
        message_path = (*path, index)
        if message.options.map_entry:
            continue
        yield from _fields(file, list(message.nested_type), (*message_path, 3), f"{scope}.{message.name}", locations)
        if message.name.endswith("Response"):
            continue
        for field_index, field in enumerate(message.field):
            if OUTPUT_ONLY in _field_behaviors(field):
                continue
            field_path = (*message_path, 2, field_index)
            location = locations.get(field_path)
            comment = " ".join(f"{location.leading_comments} {location.trailing_comments}".split()) if location else ""
            yield Field(
                f"{scope}.{message.name}.{field.name}",
                file.name,
                field_path,
                field,
                comment,
                tuple(location.span) if location else (),
            )


def _field_behaviors(field: descriptor_pb2.FieldDescriptorProto) -> list[int]:
    return list(field.options.Extensions[field_behavior_pb2.field_behavior])


def expected_rules(field: Field, *, is_map: bool) -> dict[str, str]:
    """The rules the field's comment calls for, as ``{rule path: value}`` (``string.max_len: 64``)."""
    comment, proto = field.comment, field.proto
    rules: dict[str, str] = {}
    repeated = proto.label == FDP.LABEL_REPEATED
    if repeated and is_map:
        if match := _ITEMS_MAX.search(comment):
            rules["map.max_pairs"] = _integer(match[1])
    elif repeated:
        if match := _RANGE_END.search(comment):
            low, high = _integer(match[1]), _integer(match[2])
            if low != "0":
                rules["repeated.min_items"] = low
            rules["repeated.max_items"] = high
        elif match := _ITEMS_MAX.search(comment):
            rules["repeated.max_items"] = _integer(match[1])
    elif proto.type == FDP.TYPE_STRING:
        if match := _CHARACTERS_RANGE.search(comment):
            rules["string.min_len"], rules["string.max_len"] = _integer(match[1]), _integer(match[2])
        else:
            if match := _CHARACTERS_MAX.search(comment):
                rules["string.max_len"] = _integer(match[1])
            if match := _CHARACTERS_MIN.search(comment):
                rules["string.min_len"] = _integer(match[1])
        if "UUID4" in comment:
            rules["string.uuid"] = "true"
        if _is_phone_number(field):
            rules["string.pattern"] = _quoted(E164)
    elif proto.type == FDP.TYPE_BYTES:
        if match := _SIZE_MAX.search(comment):
            rules["bytes.max_len"] = str(int(_integer(match[1])) * _SIZES[match[2]])
    elif proto.type in _INTEGERS or proto.type in _FLOATS:
        kind = _INTEGERS.get(proto.type) or _FLOATS[proto.type]
        number = _integer if proto.type in _INTEGERS else _decimal
        if match := _RANGE_END.search(comment) or _RANGE.search(comment):
            rules[f"{kind}.gte"], rules[f"{kind}.lte"] = number(match[1]), number(match[2])
        elif match := _AT_LEAST.search(comment):
            rules[f"{kind}.gte"] = number(match[1])
    elif proto.type == FDP.TYPE_MESSAGE and proto.type_name == ".google.protobuf.Duration":
        if match := _DURATION_RANGE.search(comment):
            rules["duration.gte"] = _seconds(match[1], match[2])
            rules["duration.lte"] = _seconds(match[3], match[4])
        else:
            if match := _DURATION_MIN.search(comment):
                rules["duration.gte"] = _seconds(match[1], match[2])
            if match := _DURATION_MAX.search(comment):
                rules["duration.lte"] = _seconds(match[1], match[2])
    if rules and not _tracks_presence(proto):
        rules["ignore"] = "IGNORE_IF_ZERO_VALUE"
    return rules


def _tracks_presence(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    """Whether an unset field is told apart from zero, which makes protovalidate skip it anyway."""
    return field.label != FDP.LABEL_REPEATED and (field.type == FDP.TYPE_MESSAGE or field.HasField("oneof_index"))


def _is_phone_number(field: Field) -> bool:
    """A string that the comment says is an E.164 number, and nothing else (not "a number or a SIP URI")."""
    name = field.proto.name
    if field.full_name.endswith(".E164Number.value"):
        return "E.164" in field.comment
    return (
        "E.164" in field.comment
        and (name.endswith("number") or name.endswith("_number") or name in {"from", "to", "caller_id"})
        and " or " not in field.comment.split("E.164", 1)[1][:40]
        and "not in E.164" not in field.comment
    )


def actual_rules(field: descriptor_pb2.FieldDescriptorProto) -> dict[str, str]:
    """The ``buf.validate`` rules a field carries, flattened to ``{rule path: value}``."""
    rules: Any = field.options.Extensions[_FIELD_RULES]
    flat: dict[str, str] = {}
    for descriptor, value in rules.ListFields():
        if descriptor.name == "ignore":
            flat["ignore"] = validate_pb2.Ignore.Name(value)
        elif descriptor.name == "required":
            flat["required"] = str(value).lower()
        elif descriptor.message_type is not None:
            for inner, inner_value in value.ListFields():
                if isinstance(inner_value, duration_pb2.Duration):
                    flat[f"{descriptor.name}.{inner.name}"] = f"{inner_value.seconds}s"
                elif inner.message_type is not None:  # items/keys/values: nested rules, reported whole
                    flat[f"{descriptor.name}.{inner.name}"] = text_format.MessageToString(inner_value, as_one_line=True)
                elif isinstance(inner_value, bool):
                    flat[f"{descriptor.name}.{inner.name}"] = str(inner_value).lower()
                elif isinstance(inner_value, str):
                    flat[f"{descriptor.name}.{inner.name}"] = _quoted(inner_value)
                elif isinstance(inner_value, float):
                    flat[f"{descriptor.name}.{inner.name}"] = _decimal(repr(inner_value))
                else:
                    flat[f"{descriptor.name}.{inner.name}"] = str(inner_value)
    return flat


def findings(descriptor_set: descriptor_pb2.FileDescriptorSet) -> list[Finding]:
    """Every field whose comment states a checkable limit or that carries a rule."""
    maps = _map_fields(descriptor_set)
    found = []
    for field in contract_fields(descriptor_set):
        expected = expected_rules(field, is_map=field.full_name in maps)
        actual = actual_rules(field.proto)
        if expected or actual:
            found.append(Finding(field, expected, actual))
    return found


def _map_fields(descriptor_set: descriptor_pb2.FileDescriptorSet) -> set[str]:
    names: set[str] = set()

    def walk(messages: list[descriptor_pb2.DescriptorProto], scope: str) -> None:
        for message in messages:
            entries = {f".{scope}.{message.name}.{n.name}" for n in message.nested_type if n.options.map_entry}
            names.update(f"{scope}.{message.name}.{f.name}" for f in message.field if f.type_name in entries)
            walk(list(message.nested_type), f"{scope}.{message.name}")

    for file in descriptor_set.file:
        walk(list(file.message_type), file.package)
    return names


def _integer(text: str) -> str:
    return str(int(text.replace(",", "")))


def _decimal(text: str) -> str:
    value = float(text.replace(",", ""))
    return str(int(value)) if value.is_integer() else repr(value)


def _seconds(amount: str, unit: str) -> str:
    return f"{int(float(amount.replace(',', '')) * _UNIT_SECONDS[unit])}s"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_option(rules: dict[str, str]) -> str:
    """The field options that set ``rules`` (``(buf.validate.field).string = {max_len: 64}`` …)."""
    groups: dict[str, list[str]] = {}
    options = []
    for key, value in rules.items():
        if key == "ignore":
            continue
        kind, rule = key.split(".", 1)
        if kind == "duration":
            value = f"{{seconds: {value.rstrip('s')}}}"
        groups.setdefault(kind, []).append(f"{rule}: {value}")
    options += [f"(buf.validate.field).{kind} = {{{', '.join(parts)}}}" for kind, parts in groups.items()]
    if "ignore" in rules:
        options.append(f"(buf.validate.field).ignore = {rules['ignore']}")
    return ", ".join(options)


def apply(found: list[Finding], protos: pathlib.Path) -> int:
    """Write the missing rules of fields that carry none yet into their .proto files; the count written."""
    by_file: dict[str, list[Finding]] = {}
    for finding in found:
        if finding.missing and not finding.actual and finding.field.span:
            by_file.setdefault(finding.field.file, []).append(finding)
    for name, file_findings in by_file.items():
        path = protos / name
        lines = path.read_text().splitlines(keepends=True)
        # Last declaration first, so earlier spans stay where they are.
        for finding in sorted(file_findings, key=lambda f: f.field.span, reverse=True):
            span = finding.field.span
            end_line, end_column = (span[2], span[3]) if len(span) == 4 else (span[0], span[2])
            line = lines[end_line]
            head, tail = line[:end_column], line[end_column:]
            declaration = head.rstrip()
            option = render_option(finding.expected)
            if declaration.endswith("];"):
                head = declaration[:-2] + f", {option}];"
            else:
                head = declaration[:-1] + f" [{option}];"
            lines[end_line] = head + tail
        text = "".join(lines)
        if 'import "buf/validate/validate.proto";' not in text:
            # buf format sorts the imports afterwards; a file with none gets its first after the package.
            if re.search(r"^import ", text, flags=re.M):
                text = re.sub(r"^(import )", r'import "buf/validate/validate.proto";\n\1', text, count=1, flags=re.M)
            else:
                text = re.sub(
                    r"^(package [^\n]+\n)", r'\1\nimport "buf/validate/validate.proto";\n', text, count=1, flags=re.M
                )
        path.write_text(text)
    return sum(len(items) for items in by_file.values())


def main() -> int:
    """Report (or, with --apply, write) the missing rules; exit 1 while any is missing."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--descriptor-set", type=pathlib.Path, default=ROOT / "gen" / "vocelio.binpb")
    parser.add_argument("--protos", type=pathlib.Path, default=ROOT / "protos")
    parser.add_argument("--apply", action="store_true", help="write missing rules into the .proto files")
    args = parser.parse_args()
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(args.descriptor_set.read_bytes())
    found = findings(descriptor_set)
    if args.apply:
        print(f"wrote rules for {apply(found, args.protos)} fields; now run buf format -w and make proto")
        return 0
    problems = 0
    for finding in found:
        if finding.missing:
            problems += 1
            print(f"{finding.field.full_name}: comment states {finding.missing}, rules {finding.actual or 'none'}")
        if finding.unstated:
            problems += 1
            print(f"{finding.field.full_name}: rules {finding.unstated} not stated in its comment")
    covered = sum(1 for finding in found if not finding.missing and not finding.unstated)
    print(f"{covered} fields' limits are rules; {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
