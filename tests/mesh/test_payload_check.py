"""The compiled ProtoJSON check agrees with ``json_format.ParseDict``, for every event type's message.

The differential tests draw random messages of each event payload (every field kind, nested
messages, repeated fields, maps, oneofs and the well-known types the contracts use), take their
ProtoJSON through ``MessageToDict`` into a ``Struct``, and then damage it at random places (wrong
kinds, unknown keys, out-of-range numbers, bad enum names and base64, two oneof members, bad
timestamps, garbage objects): the checker must refuse exactly when ``ParseDict`` does.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
from google.protobuf import (
    any_pb2,
    descriptor,
    duration_pb2,
    json_format,
    message,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.event_types import default_event_types
from mesh.payload_check import checker_for
from mesh.payload_check.values import canonical_duration_exists, canonical_timestamp_exists
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

EVENTS = default_event_types()
TYPES = list(EVENTS)
FD = descriptor.FieldDescriptor

# The contracts use few of the kinds ProtoJSON has (no int or bool map keys, no float, sint or fixed
# fields): one test-only message has them all, so the differential tests cover every kind.
_KINDS_PROTO = """
int32 i32 = 1; int64 i64 = 2; uint32 u32 = 3; uint64 u64 = 4; sint32 s32 = 5; sint64 s64 = 6; fixed32 f32 = 7;
fixed64 f64 = 8; sfixed32 sf32 = 9; sfixed64 sf64 = 10; float fl = 11; double db = 12; bool b = 13; string s = 14;
bytes by = 15; Color color = 16; Kinds child = 17; repeated int64 ri64 = 18; repeated Kinds rchild = 19;
repeated float rfl = 20; repeated bytes rby = 21; repeated Color rcolor = 22; map<int32,string> m_i32 = 23;
map<uint64,Kinds> m_u64 = 24; map<bool,double> m_b = 25; map<sint64,Color> m_col = 26; map<string,bytes> m_by = 27;
map<fixed32,int64> m_f32 = 28; optional int32 opt = 29; google.protobuf.Int64Value w_i64 = 30;
google.protobuf.FloatValue w_f = 31; google.protobuf.BoolValue w_b = 32; google.protobuf.StringValue w_s = 33;
google.protobuf.BytesValue w_by = 34; google.protobuf.UInt32Value w_u32 = 35; google.protobuf.Timestamp ts = 36;
google.protobuf.Duration du = 37; google.protobuf.FieldMask fm = 38; google.protobuf.Struct st = 39;
google.protobuf.Value va = 40; google.protobuf.ListValue lv = 41; google.protobuf.Empty em = 42;
repeated google.protobuf.Value rva = 43; map<string,google.protobuf.Value> m_va = 44; string snake_case_name = 45;
repeated google.protobuf.Timestamp rts = 46; map<string,google.protobuf.Duration> m_du = 47;
"""


def _kinds_message() -> Any:
    """``payload_check_test.Kinds``: every field kind, built from a descriptor (no protoc needed)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, field_mask_pb2, wrappers_pb2

    wkt_files = [timestamp_pb2, duration_pb2, field_mask_pb2, struct_pb2, wrappers_pb2, empty_pb2]
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/payload_check_kinds.proto",
        package="payload_check_test",
        syntax="proto3",
        dependency=[module.DESCRIPTOR.name for module in wkt_files],
    )
    file.enum_type.add(name="Color").value.extend(
        descriptor_pb2.EnumValueDescriptorProto(name=name, number=number)
        for number, name in enumerate(["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_BLUE"])
    )
    kinds = file.message_type.add(name="Kinds")
    kinds.oneof_decl.add(name="choice")  # index 0: real oneofs come before proto3 optional's synthetic ones
    scalars = ["int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32"]
    scalars += ["sfixed64", "float", "double", "bool", "string", "bytes"]
    types = {name: getattr(FD, f"TYPE_{name.upper()}") for name in scalars}
    for declaration in filter(None, (d.strip() for d in _KINDS_PROTO.replace("\n", " ").split(";"))):
        words = declaration.replace("=", " ").split()
        label, words = (words[0], words[1:]) if words[0] in ("repeated", "optional") else ("", words)
        type_name, name, number = words[0], words[1], int(words[2])
        field: Any = kinds.field.add(name=name, number=number, json_name=_camel(name))
        field.label = FD.LABEL_REPEATED if label == "repeated" else FD.LABEL_OPTIONAL
        if type_name.startswith("map<"):
            key_type, value_type = type_name[4:-1].split(",")
            entry = kinds.nested_type.add(name=_camel(name).capitalize() + "Entry")
            entry.options.map_entry = True
            for entry_name, entry_number, entry_type in (("key", 1, key_type), ("value", 2, value_type.strip())):
                _set_type(
                    entry.field.add(name=entry_name, number=entry_number, json_name=entry_name), entry_type, types
                )
            field.label = FD.LABEL_REPEATED
            field.type, field.type_name = FD.TYPE_MESSAGE, f".payload_check_test.Kinds.{entry.name}"
        else:
            _set_type(field, type_name, types)
        if label == "optional":
            field.proto3_optional = True
            field.oneof_index = len(kinds.oneof_decl)
            kinds.oneof_decl.add(name=f"_{name}")
    for name, number in (("c_s", 50), ("c_i", 51), ("c_m", 52)):
        member = kinds.field.add(name=name, number=number, json_name=_camel(name), label=FD.LABEL_OPTIONAL)
        _set_type(member, {"c_s": "string", "c_i": "int32", "c_m": "Kinds"}[name], types)
        member.oneof_index = 0
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("payload_check_test.Kinds"))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _set_type(field: Any, type_name: str, types: dict[str, int]) -> None:
    if type_name in types:
        field.type = types[type_name]
    elif type_name == "Color":
        field.type, field.type_name = FD.TYPE_ENUM, ".payload_check_test.Color"
    else:
        field.type = FD.TYPE_MESSAGE
        field.type_name = ".payload_check_test.Kinds" if type_name == "Kinds" else f".{type_name}"


@dataclasses.dataclass(frozen=True)
class _Target:
    type: str
    descriptor: descriptor.Descriptor
    message_class: Any


KINDS = _kinds_message()
TARGETS = [*TYPES, _Target("test.kinds", KINDS.DESCRIPTOR, KINDS)]

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)

# ---------------------------------------------------------------- random messages


_INT_BOUNDS = {
    FD.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FD.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FD.CPPTYPE_UINT32: (0, 2**32 - 1),
    FD.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _scalar(data, field):
    cpp = field.cpp_type
    if cpp in _INT_BOUNDS:
        return data.draw(st.integers(*_INT_BOUNDS[cpp]))
    if cpp == FD.CPPTYPE_DOUBLE:
        return data.draw(st.floats())
    if cpp == FD.CPPTYPE_FLOAT:
        # MessageToDict writes the largest floats as 3.4028235e+38, which ParseDict then refuses as too large
        # (a json_format round-trip bug; the checker agrees with ParseDict there): stay below them.
        return data.draw(st.floats(width=32).filter(lambda x: not math.isfinite(x) or abs(x) < 3.4e38))
    if cpp == FD.CPPTYPE_BOOL:
        return data.draw(st.booleans())
    if cpp == FD.CPPTYPE_ENUM:
        numbers = [value.number for value in field.enum_type.values]
        return data.draw(st.sampled_from(numbers) | st.integers(-5, 1000))
    if field.type == FD.TYPE_BYTES:
        return data.draw(st.binary(max_size=12))
    return data.draw(st.text(max_size=12))


def _fill_wkt(data, target: Any) -> bool:
    name = target.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        target.seconds = data.draw(st.integers(-62135596800, 253402300799))
        target.nanos = data.draw(st.integers(0, 999_999_999))
    elif name == "google.protobuf.Duration":
        seconds = data.draw(st.integers(-315576000000, 315576000000))
        nanos = data.draw(st.integers(0, 999_999_999))
        target.seconds, target.nanos = seconds, (-nanos if seconds < 0 else nanos)
    elif name == "google.protobuf.FieldMask":
        target.paths.extend(data.draw(st.lists(st.from_regex(r"\A[a-z]{1,4}(_[a-z]{1,4}){0,2}\Z"), max_size=3)))
    elif name == "google.protobuf.Struct":
        target.update(data.draw(st.dictionaries(st.text(max_size=5), _JSON, max_size=3)))
    elif name == "google.protobuf.Value":
        json_format.ParseDict(data.draw(_JSON), target)
    elif name == "google.protobuf.ListValue":
        target.extend(data.draw(st.lists(_JSON, max_size=3)))
    elif name == "google.protobuf.Any":
        packed = data.draw(
            st.sampled_from(
                [
                    timestamp_pb2.Timestamp(seconds=5),
                    duration_pb2.Duration(seconds=-3),
                    struct_pb2.Value(bool_value=True),
                ]
            )
        )
        target.Pack(packed)
    elif target.DESCRIPTOR.file.name == "google/protobuf/wrappers.proto":
        target.value = _scalar(data, target.DESCRIPTOR.fields_by_name["value"])
    else:
        return False
    return True


def _fill(data, target: message.Message, depth: int) -> None:
    if _fill_wkt(data, target):
        return
    chosen_oneofs: set[str] = set()
    for field in target.DESCRIPTOR.fields:
        if not data.draw(st.booleans()):
            continue
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in chosen_oneofs:
                continue
            chosen_oneofs.add(oneof.name)
        message_type = field.message_type
        if message_type is not None and depth >= 4:
            continue
        holder: Any = getattr(target, field.name)
        if message_type is not None and message_type.GetOptions().map_entry:
            key_field, value_field = message_type.fields_by_name["key"], message_type.fields_by_name["value"]
            for _ in range(data.draw(st.integers(0, 2))):
                key = _scalar(data, key_field)
                if value_field.message_type is not None:
                    _fill(data, holder[key], depth + 1)
                else:
                    holder[key] = _scalar(data, value_field)
        elif field.is_repeated:
            for _ in range(data.draw(st.integers(0, 2))):
                if message_type is not None:
                    _fill(data, holder.add(), depth + 1)
                else:
                    holder.append(_scalar(data, field))
        elif message_type is not None:
            holder.SetInParent()
            _fill(data, holder, depth + 1)
        else:
            setattr(target, field.name, _scalar(data, field))


def _random_json(data, event) -> dict[str, Any]:
    sample = event.message_class()
    _fill(data, sample, 0)
    return json_format.MessageToDict(sample)


# ---------------------------------------------------------------- mutations

_AWKWARD_STRINGS = [
    "", "NaN", "nan", "NAN", "Infinity", "-Infinity", "inf", "1e3", "1.5", "1.0", " 1", "1 ", "\t7", "1_000",
    "0x10", "2147483647", "2147483648", "-2147483649", "4294967295", "4294967296", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "-1", "true", "false", "AQID", "AQI", "A", "ab=c", "a-_b",
    "****", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00", "2020-13-01T00:00:00Z", "0001-01-01t00:00:00Z",
    "2020-01-01T00:00:00.1234567891Z", "1s", "1.5s", "-0.5s", "s", "315576000001s", "a,b", "fooBar", "@type",
    "1e39", "3.4028234663852886e38", "-", "9" * 30, "2024-02-29T23:59:59.999999999Z", "2023-02-29T00:00:00Z",
    "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2020-01-01T24:00:00Z", "2020-01-01T00:00:60Z",
    "2020-01-01T00:00:00.Z", "2020-01-01T00:00:00+01:00", "2020-1-1T1:2:3Z", "2020-01-01T00:00:00.123Z",
    "315576000001s", "315576000000.999999999s", "-315576000000.5s", "1.s", "1.1234567890s",
]  # fmt: skip
_AWKWARD_NUMBERS = [
    0.0, -1.0, 1.5, -0.5, 1e10, 2.0**31, 2.0**31 - 1, -(2.0**31), -(2.0**31) - 1, 2.0**32, 2.0**63, 2.0**64,
    -(2.0**63), 1e39, 3.5e38, 1e300, 5e-324,
]  # fmt: skip


def _junk(field: descriptor.FieldDescriptor | None):
    strings = list(_AWKWARD_STRINGS)
    if field is not None and field.enum_type is not None:
        strings += [value.name for value in field.enum_type.values] + ["NOPE", field.enum_type.values[0].name.lower()]
    leaf = (
        st.none()
        | st.booleans()
        | st.sampled_from(_AWKWARD_NUMBERS)
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from(strings)
        | st.text(max_size=4)
    )
    keys = st.sampled_from(["", "x", "name", "value", "@type", "seconds", "nope"]) | st.text(max_size=4)
    return st.recursive(
        leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3), max_leaves=6
    )


def _wkt_or_map(field: descriptor.FieldDescriptor | None) -> bool:
    if field is None or field.message_type is None:
        return False
    return field.message_type.full_name.startswith("google.protobuf.") or field.message_type.GetOptions().map_entry


def _objects(node: Any, message_type: descriptor.Descriptor | None, out: list[Any]) -> None:
    """Every JSON object and list in the tree, with the message type of the objects that are messages."""
    if isinstance(node, dict):
        out.append((node, message_type))
        for key, value in node.items():
            field = None
            if message_type is not None:
                field = message_type.fields_by_name.get(key) or next(
                    (f for f in message_type.fields if f.json_name == key), None
                )
            child = field.message_type if field is not None and not _wkt_or_map(field) else None
            if field is not None and field.message_type is not None and field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if isinstance(value, dict) and value_field.message_type is not None and not _wkt_or_map(value_field):
                    for item in value.values():
                        _objects(item, value_field.message_type, out)
                    continue
            _objects(value, child, out)
    elif isinstance(node, list):
        out.append((node, None))
        for item in node:
            _objects(item, message_type, out)


def _mutate(data, tree: dict[str, Any], root: descriptor.Descriptor) -> None:
    nodes: list[Any] = []
    _objects(tree, root, nodes)
    node, message_type = data.draw(st.sampled_from(nodes))
    if isinstance(node, list):
        if node:
            node[data.draw(st.integers(0, len(node) - 1))] = data.draw(_junk(None))
        else:
            node.append(data.draw(_junk(None)))
        return
    fields = list(message_type.fields) if message_type is not None else []
    choice = data.draw(st.integers(0, 5))
    if choice == 0 or not fields:  # a key the message may lack
        node[
            data.draw(
                st.sampled_from(["nope", "@type", "Name", "[x.y]", "", "1", "-1", "2147483648", "true", "1e3", " 1"])
                | st.text(max_size=4)
            )
        ] = data.draw(_junk(None))
    elif choice == 1 and node:  # an existing key, any value
        key = data.draw(st.sampled_from(sorted(node)))
        field = message_type.fields_by_name.get(key) or next((f for f in fields if f.json_name == key), None)
        node[key] = data.draw(_junk(field))
    elif choice == 2:  # a field, under its JSON or proto name, with a value of any kind
        field = data.draw(st.sampled_from(fields))
        node[data.draw(st.sampled_from([field.json_name, field.name]))] = data.draw(_junk(field))
    elif choice == 3:  # a set field again under its other name
        field = data.draw(st.sampled_from(fields))
        value = node.get(field.json_name, data.draw(_junk(field)))
        node[field.name] = value
    elif choice == 4:  # two members of one oneof
        oneofs = [oneof for oneof in message_type.oneofs if len(oneof.fields) > 1]
        if oneofs:
            oneof = data.draw(st.sampled_from(oneofs))
            for field in data.draw(st.permutations(list(oneof.fields)))[:2]:
                node[field.json_name] = data.draw(_junk(field) | st.just({}))
    else:  # a nested message replaced by garbage
        messages = [f for f in fields if f.message_type is not None]
        if messages:
            field = data.draw(st.sampled_from(messages))
            node[field.json_name] = data.draw(
                st.sampled_from(["", [], {}, "x", [1], {"nope": 1}, {"": None}]) | _junk(None)
            )


# ---------------------------------------------------------------- the verdicts


def _as_struct(tree: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(tree)
    return result


def _parse_dict_refuses(event, data: struct_pb2.Struct) -> str | None:
    try:
        json_format.ParseDict(json_format.MessageToDict(data), event.message_class())
    except json_format.ParseError as error:
        return str(error)
    except (AttributeError, TypeError, ValueError, KeyError) as error:
        # ParseDict crashes instead of refusing on a few shapes (an Any whose "@type" is not a string):
        # no append went through with those either; the checker refuses them.
        return f"{type(error).__name__}: {error}"
    return None


@pytest.mark.parametrize("event", TARGETS, ids=lambda e: e.type)
@SETTINGS
@given(data=st.data())
def test_the_protojson_of_any_message_is_accepted(event, data):
    struct = _as_struct(_random_json(data, event))
    assert _parse_dict_refuses(event, struct) is None
    assert checker_for(event.descriptor)(struct) is None


@pytest.mark.parametrize("event", TARGETS, ids=lambda e: e.type)
@SETTINGS
@given(data=st.data())
def test_damaged_protojson_is_refused_exactly_when_parse_dict_refuses(event, data):
    tree = _random_json(data, event)
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate(data, tree, event.descriptor)
    struct = _as_struct(tree)
    expected = _parse_dict_refuses(event, struct)
    found = checker_for(event.descriptor)(struct)
    assert (found is None) == (expected is None), f"checker: {found!r}; ParseDict: {expected!r}; data: {tree!r}"


# ---------------------------------------------------------------- explicit cases

UPDATED = EVENTS.get("agent.updated")
CHECK = checker_for(UPDATED.descriptor)


def _check(tree: dict[str, Any]) -> str | None:
    struct = _as_struct(tree)
    found = CHECK(struct)
    assert (found is None) == (_parse_dict_refuses(UPDATED, struct) is None)
    return found


def test_the_bench_shaped_payload_is_accepted():
    # bench.events.make_payload's agent.updated: an agent's names and a padded description, one changed path.
    agent = agent_pb2.Agent(
        name="organizations/org_a/agents/ag_1",
        organization_id="org_a",
        display_name="Front desk",
        description="x" * 400,
    )
    payload = EVENTS.encode(agents_events_pb2.AgentUpdatedEvent(agent=agent, changed=["description"]))
    assert CHECK(_as_struct(payload.data)) is None


def test_json_and_proto_names_are_both_accepted_and_unknown_fields_refused():
    assert _check({"agent": {"displayName": "a", "organization_id": "o"}, "restored_from": "x"}) is None
    assert _check({"agent": {"display_nam": "a"}}) == "agent.display_nam: vocelio.agents.v1.Agent has no such field"


def test_problems_name_the_path_down_to_the_value():
    assert _check({"agent": {"state": "NOPE"}}) == "agent.state: 'NOPE' is not a vocelio.agents.v1.AgentState name"
    assert _check({"changed": ["a", 3]}) == "changed[1]: must be a string, not a number"
    assert _check({"changed": [None]}) == "changed[0]: must not be null"
    assert _check({"agent": {"labels": {"team": 1}}}) == "agent.labels[team]: must be a string, not a number"
    assert _check({"agent": {"latestVersion": 2.5}}) == "agent.latestVersion: 2.5 is not an integer"
    out_of_range = _check({"agent": {"latestVersion": "2147483648"}})
    assert out_of_range is not None and out_of_range.startswith("agent.latestVersion: 2147483648 is out of range")
    assert _check({"agent": "Front desk"}) == "agent: must be an object, not a string"


def test_parse_dict_corners_are_kept():
    # null leaves a field unset; "" and [] pass as empty messages; integral floats and decimal strings as ints.
    assert _check({"agent": None, "changed": None}) is None
    assert _check({"agent": ""}) is None
    assert _check({"agent": []}) is None
    assert _check({"agent": {"latestVersion": "1e3", "pinnedVersion": 7.0, "state": 1}}) is None
    assert _check({"agent": {"state": 1.5}}) is None  # an enum number goes through int()
    # upb's enum lookup by number keys on the low 32 bits: 2**32 reads as value 0, 2**31 is out of range.
    assert _check({"agent": {"state": 2.0**32}}) is None
    assert _check({"agent": {"state": 2.0**31}}) == "agent.state: 2147483648 is out of range for an enum"


def _reachable() -> list[descriptor.Descriptor]:
    """Every message type the event payloads reach, event payloads first."""
    found: dict[str, descriptor.Descriptor] = {}
    pending = [event.descriptor for event in TYPES]
    while pending:
        current = pending.pop(0)
        if current.full_name not in found:
            found[current.full_name] = current
            pending += [f.message_type for f in current.fields if f.message_type is not None]
    return list(found.values())


def test_a_oneof_takes_one_member():
    with_oneof = next(m for m in _reachable() if any(len(o.fields) > 1 for o in m.oneofs))
    oneof = next(o for o in with_oneof.oneofs if len(o.fields) > 1)
    first, second = oneof.fields[0], oneof.fields[1]
    check = checker_for(with_oneof)
    one = {first.json_name: _valid_json_of(first)}
    assert check(_as_struct(one)) is None
    both = {**one, second.json_name: _valid_json_of(second)}
    problem = check(_as_struct(both))  # the second met in the Struct's (hash) order is the one named
    assert problem in {f"{f.json_name}: another member of its oneof is already set" for f in (first, second)}
    assert check(_as_struct({**one, second.json_name: None})) is None  # null is no member


def _valid_json_of(field: descriptor.FieldDescriptor) -> Any:
    assert field.containing_type is not None
    holder: Any = message_factory.GetMessageClass(field.containing_type)()
    if field.message_type is not None:
        getattr(holder, field.name).SetInParent()
        return json_format.MessageToDict(getattr(holder, field.name))
    value = {FD.CPPTYPE_STRING: "x", FD.CPPTYPE_BOOL: True, FD.CPPTYPE_ENUM: 0}.get(field.cpp_type, 1)
    setattr(holder, field.name, b"x" if field.type == FD.TYPE_BYTES else value)
    return json_format.MessageToDict(holder, always_print_fields_with_no_presence=True)[field.json_name]


def test_well_known_types_are_checked_by_their_own_rules():
    holder, field = next(
        (m, f)
        for m in _reachable()
        for f in m.fields
        if f.message_type is not None and f.message_type.full_name == "google.protobuf.Timestamp"
    )
    check = checker_for(holder)
    assert check(_as_struct({field.json_name: "2026-12-07T10:00:00.5Z"})) is None
    problem = check(_as_struct({field.json_name: "2026-12-07 10:00:00"}))
    assert problem is not None and problem.startswith(f"{field.json_name}: not a Timestamp")
    assert check(_as_struct({field.json_name: 3})) == f"{field.json_name}: must be a Timestamp string, not a number"


def test_the_largest_float_is_refused_as_parse_dict_does_although_message_to_dict_writes_it():
    written = json_format.MessageToDict(KINDS(fl=float.fromhex("0x1.fffffep+127")))
    assert written == {"fl": 3.4028235e38}
    struct = _as_struct(written)
    assert _parse_dict_refuses(TARGETS[-1], struct) is not None
    assert checker_for(KINDS.DESCRIPTOR)(struct) == "fl: 3.4028235e+38 is out of range for a float"


def test_a_non_finite_number_is_refused_not_raised():
    struct = _as_struct({"agent": {"latestVersion": 1}})
    struct.fields["agent"].struct_value.fields["latestVersion"].number_value = math.inf
    assert CHECK(struct) == "agent.latestVersion: inf is not an integer"
    with pytest.raises(ValueError, match="Infinity"):
        json_format.MessageToDict(struct)  # why the old path could not give a verdict at all


def test_checkers_are_compiled_once_per_message_type():
    assert checker_for(agents_events_pb2.AgentUpdatedEvent.DESCRIPTOR) is CHECK
    any_field = any_pb2.Any.DESCRIPTOR
    assert checker_for(any_field)(_as_struct({})) is None  # a well-known root goes whole to json_format


_TIMESTAMP_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_DURATION_SHAPE = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?s")


@settings(max_examples=300, deadline=None)
@given(
    text=st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,10})?Z?\Z")
    | st.from_regex(r"\A-?[0-9]{1,13}(\.[0-9]{0,10})?s\Z")
)
def test_the_timestamp_and_duration_fast_paths_agree_with_from_json_string(text):
    # The fast paths decide the shapes MessageToDict writes; anything else goes to FromJsonString itself.
    is_timestamp = "T" in text
    target = timestamp_pb2.Timestamp() if is_timestamp else duration_pb2.Duration()
    fast = canonical_timestamp_exists(text) if is_timestamp else canonical_duration_exists(text)
    shape = (_TIMESTAMP_SHAPE if is_timestamp else _DURATION_SHAPE).fullmatch(text) is not None
    try:
        target.FromJsonString(text)
        accepted = True
    except ValueError:
        accepted = False
    assert fast == (accepted and shape)
