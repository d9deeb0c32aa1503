"""Update masks (AIP-134) driven by the contract's ``google.api.field_behavior``.

``UpdateMask.for_message(agent_pb2.Agent)`` reads which fields are ``IDENTIFIER``,
``OUTPUT_ONLY``, ``IMMUTABLE`` and ``REQUIRED`` from the descriptor, so no service keeps a
hand list of output-only fields. Paths a caller may name: every other top-level field and,
for a message field, ``field.<sub-field>`` (one level, by the same rules). ``etag`` is
compared, never written. ``*`` replaces every updatable field; an empty mask means "the
fields the request populates". Named fields are replaced, not merged: ``labels`` with an
empty map clears the labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor, field_mask_pb2, message

from mesh.errors import InvalidArgument
from mesh.kit.validation import Violations

_BEHAVIOR: Any = field_behavior_pb2.field_behavior
_FD = descriptor.FieldDescriptor
_NOT_WRITABLE = {
    field_behavior_pb2.IDENTIFIER: "identifies the resource and cannot be changed",
    field_behavior_pb2.OUTPUT_ONLY: "is output only",
    field_behavior_pb2.IMMUTABLE: "is immutable: it is set when the resource is created",
}
_ETAG = "etag"


def behaviors(field: Any) -> frozenset[int]:
    """The ``google.api.field_behavior`` values of a field descriptor."""
    return frozenset(field.GetOptions().Extensions[_BEHAVIOR])


@dataclasses.dataclass(frozen=True, slots=True)
class UpdateMask:
    """The update rules of one resource message.

    Attributes:
        message_class: the resource message (``Agent``).
        updatable: the top-level fields a caller may name, sorted.
        required: the top-level fields that must stay set (``REQUIRED``).

    """

    message_class: type[message.Message]
    updatable: tuple[str, ...]
    required: tuple[str, ...]

    @classmethod
    def for_message(cls, message_class: type[message.Message]) -> UpdateMask:
        """The rules the contract declares for ``message_class`` (cached)."""
        found = _RULES.get(message_class)
        if found is None:
            found = _RULES[message_class] = _rules_of(message_class)
        return found

    def path_problem(self, path: str) -> str | None:
        """Why ``path`` cannot be updated, or ``None`` when it can."""
        head, separator, rest = path.partition(".")
        if separator and not rest:
            return f'"{path}" is not a field path'
        descriptor: Any = self.message_class.DESCRIPTOR
        field = descriptor.fields_by_name.get(head)
        if field is None:
            return f'"{path}" is not a field of {descriptor.name}'
        if head == _ETAG:
            return f'"{path}" is compared, not written: send the etag you read in the resource\'s etag'
        if problem := _unwritable(field):
            return f'"{path}" {problem}'
        if not rest:
            return None
        if not _is_nested_message(field):
            return f'"{path}" names a sub-field of {head}, which has none'
        sub_field = field.message_type.fields_by_name.get(rest)
        if sub_field is None:
            return f'"{path}" is not a field of {field.message_type.name}'
        if problem := _unwritable(sub_field):
            return f'"{path}" {problem}'
        return None

    def resolve(self, paths: Sequence[str], patch: message.Message, *, field: str = "update_mask") -> tuple[str, ...]:
        """The canonical paths an update changes (sorted, a field and its sub-fields collapsed).

        Args:
            paths: ``update_mask.paths`` as sent; empty means "every populated field".
            patch: the resource in the request, holding the new values.
            field: the mask's field name in the request, for error paths.

        Raises:
            InvalidArgument: a path is unknown, output-only, immutable or an identifier (each
                named ``update_mask.paths[i]``), ``*`` is combined with other paths, or an empty
                mask meets a request with nothing in it.

        """
        if not paths:
            implied = self.populated(patch)
            if not implied:
                raise InvalidArgument(
                    f"nothing to update: name fields in {field} or set them in the request",
                    {field: "is empty and the request carries no values"},
                )
            return implied
        if "*" in paths:
            if len(paths) > 1:
                raise InvalidArgument("'*' cannot be combined with other paths", {field: "mixes '*' with paths"})
            return self.updatable
        violations = Violations()
        for index, path in enumerate(paths):
            if (problem := self.path_problem(path)) is not None:
                violations.add(f"{field}.paths[{index}]", problem)
        if violations:
            raise InvalidArgument(f"{field} has {len(violations)} path(s) that cannot be updated", violations.as_dict())
        canonical = field_mask_pb2.FieldMask()
        canonical.CanonicalFormFromMask(field_mask_pb2.FieldMask(paths=list(paths)))
        return tuple(canonical.paths)

    def populated(self, patch: message.Message) -> tuple[str, ...]:
        """The updatable fields a request sets (AIP-134's implied mask); message fields by sub-field."""
        paths: list[str] = []
        for field, value in patch.ListFields():
            if field.name not in self.updatable:
                continue
            if _is_nested_message(field):
                paths.extend(f"{field.name}.{sub.name}" for sub, _value in value.ListFields() if not _unwritable(sub))
            else:
                paths.append(field.name)
        return tuple(sorted(paths))

    def apply(self, current: message.Message, patch: message.Message, paths: Sequence[str]) -> Any:
        """A copy of ``current`` with the masked fields replaced by ``patch``'s values.

        ``paths`` must come from :meth:`resolve`. Messages, lists and maps named by a path are
        replaced as a whole, never merged.
        """
        updated = type(current)()
        updated.CopyFrom(current)
        mask = field_mask_pb2.FieldMask(paths=list(paths))
        mask.MergeMessage(patch, updated, replace_message_field=True, replace_repeated_field=True)
        return updated

    def required_problems(self, resource: message.Message, *, prefix: str = "") -> dict[str, str]:
        """The ``REQUIRED`` fields an update would leave empty, as ``{prefix + field: "is required"}``."""
        missing: dict[str, str] = {}
        for name in self.required:
            field = resource.DESCRIPTOR.fields_by_name[name]
            value = getattr(resource, name)
            empty = not resource.HasField(name) if _has_presence(field) else not value
            if isinstance(value, str):
                empty = not value.strip()
            if empty:
                missing[f"{prefix}{name}"] = "is required"
        return missing


_RULES: dict[type[message.Message], UpdateMask] = {}


def _rules_of(message_class: type[message.Message]) -> UpdateMask:
    descriptor: Any = message_class.DESCRIPTOR
    fields = descriptor.fields
    updatable = tuple(sorted(f.name for f in fields if f.name != _ETAG and not _unwritable(f)))
    required = tuple(sorted(f.name for f in fields if field_behavior_pb2.REQUIRED in behaviors(f)))
    return UpdateMask(message_class, updatable, required)


def _unwritable(field: Any) -> str | None:
    for behavior in behaviors(field):
        if behavior in _NOT_WRITABLE:
            return _NOT_WRITABLE[behavior]
    return None


def _is_nested_message(field: Any) -> bool:
    """A singular message field that is not a well-known type (those are leaves, like scalars)."""
    return (
        field.type == _FD.TYPE_MESSAGE
        and not _is_repeated(field)
        and not field.message_type.full_name.startswith("google.protobuf.")
    )


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _has_presence(field: Any) -> bool:
    return bool(field.has_presence)
