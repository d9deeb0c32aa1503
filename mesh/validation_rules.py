"""The contracts' ``buf.validate`` rules, checked against a message.

The rules are written in the protos (``(buf.validate.field).string.max_len``
…) and evaluated by protovalidate's native engine, which compiles them once per
message type. Most requests carry no rule at all, so whether a message type
has any (itself or in any message it can nest) is worked out once from the
descriptors and cached: a rule-less request costs one dictionary look-up.

Violations use the field paths the services' own validation uses:
``agent.draft.voice``, ``tags[2]``, ``labels["Team"]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeAlias

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2

FieldViolation: TypeAlias = error_details_pb2.BadRequest.FieldViolation
# The generated stubs type extensions as plain FieldDescriptors, which HasExtension's stub refuses.
_MESSAGE_RULES: Any = validate_pb2.message
_ONEOF_RULES: Any = validate_pb2.oneof
_FIELD_RULES: Any = validate_pb2.field

_validator = protovalidate.Validator()
_has_rules: dict[str, bool] = {}
# Keyed by the message class too, so a rule-less request costs one look-up and no descriptor access.
_has_rules_by_class: dict[type[Message], bool] = {}


def violations(message: Message) -> list[FieldViolation]:
    """Every rule ``message`` breaks, one entry per field path, in field order.

    Raises:
        protovalidate.CompilationError: a rule in the contract is malformed (a bug in the proto, caught by the
            contract tests before it ships).

    """
    checked = _has_rules_by_class.get(message.__class__)
    if checked is None:
        checked = _has_rules_by_class[message.__class__] = has_rules(message.DESCRIPTOR)
    if not checked:
        return []
    found = _validator.collect_violations(message)
    if not found:
        return []
    by_path: dict[str, list[str]] = {}
    for violation in found:
        proto = validate_pb2.Violation.FromString(violation.proto.to_binary())
        by_path.setdefault(field_path(proto.field), []).append(proto.message)
    return [FieldViolation(field=path, description="; ".join(messages)) for path, messages in by_path.items()]


def has_rules(descriptor: Any) -> bool:
    """Whether a message of this type, or any message it can contain, carries a ``buf.validate`` rule.

    Args:
        descriptor: a message type's ``Descriptor`` (``Message.DESCRIPTOR``).

    """
    cached = _has_rules.get(descriptor.full_name)
    if cached is None:
        cached = _has_rules[descriptor.full_name] = _declares_rules(descriptor, set())
    return cached


def field_path(path: validate_pb2.FieldPath) -> str:
    """A violation's field path as the services write it (``a.b[0].c``, ``labels["Team"]``)."""
    parts: list[str] = []
    for element in path.elements:
        parts.append(f".{element.field_name}" if parts else element.field_name)
        subscript = element.WhichOneof("subscript")
        if subscript == "index":
            parts.append(f"[{element.index}]")
        elif subscript == "string_key":
            parts.append(f"[{json.dumps(element.string_key)}]")
        elif subscript == "bool_key":
            parts.append(f"[{json.dumps(element.bool_key)}]")
        elif subscript is not None:
            parts.append(f"[{getattr(element, subscript)}]")
    return "".join(parts)


def _declares_rules(descriptor: Any, visiting: set[str]) -> bool:
    if descriptor.full_name in _has_rules:
        return _has_rules[descriptor.full_name]
    if descriptor.full_name in visiting:  # a cycle adds no rule of its own
        return False
    visiting.add(descriptor.full_name)
    if descriptor.GetOptions().HasExtension(_MESSAGE_RULES):
        return True
    if any(oneof.GetOptions().HasExtension(_ONEOF_RULES) for oneof in descriptor.oneofs):
        return True
    return any(
        field.GetOptions().HasExtension(_FIELD_RULES) or _nested_has_rules(field, visiting)
        for field in descriptor.fields
    )


def _nested_has_rules(field: FieldDescriptor, visiting: set[str]) -> bool:
    nested = field.message_type
    return nested is not None and _declares_rules(nested, visiting)


def messages_with_rules(descriptors: Iterable[Any]) -> list[str]:
    """The full names of those message types that carry a rule (for reports and tests)."""
    return [descriptor.full_name for descriptor in descriptors if has_rules(descriptor)]
