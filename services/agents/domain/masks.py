"""Update masks for ``UpdateAgent`` (AIP-134).

Paths a caller may name: ``display_name``, ``description``, ``labels``, ``draft`` (the
whole configuration) and ``draft.<field>`` for any field of ``AgentConfig``. ``*``
replaces every mutable field. An empty mask means "the fields the request populates".
Output-only fields and identifiers cannot be named; neither can anything else.
Named fields are replaced, not merged: ``labels`` with an empty map clears the labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import field_mask_pb2

from mesh.errors import InvalidArgument
from vocelio.agents.v1 import agent_pb2

MUTABLE_FIELDS = ("description", "display_name", "draft", "labels")
DRAFT_FIELDS = frozenset(field.name for field in agent_pb2.AgentConfig.DESCRIPTOR.fields)
OUTPUT_ONLY_FIELDS = frozenset({"organization_id", "state", "latest_version", "pinned_version", "audit"})
_NOT_UPDATABLE = {
    "name": "identifies the agent and cannot be changed",
    "etag": "is compared, not written: send the etag you read in agent.etag",
}


def resolve_update_mask(paths: Sequence[str], patch: agent_pb2.Agent) -> tuple[str, ...]:
    """The canonical paths an update changes (sorted, a field and its sub-fields collapsed).

    Args:
        paths: ``update_mask.paths`` as sent; empty means "every populated field".
        patch: the agent in the request, holding the new values.

    Raises:
        InvalidArgument: a path is unknown, output-only or an identifier (each named), ``*`` is
            combined with other paths, or an empty mask meets a request with nothing in it.

    """
    if not paths:
        implied = populated_paths(patch)
        if not implied:
            raise InvalidArgument(
                "nothing to update: name fields in update_mask or set them in the agent",
                {"update_mask": "is empty and the agent carries no values"},
            )
        return implied
    if "*" in paths:
        if len(paths) > 1:
            raise InvalidArgument("'*' cannot be combined with other paths", {"update_mask": "mixes '*' with paths"})
        return MUTABLE_FIELDS
    violations = {
        f"update_mask.paths[{index}]": problem
        for index, path in enumerate(paths)
        if (problem := path_problem(path)) is not None
    }
    if violations:
        raise InvalidArgument(f"update_mask has {len(violations)} path(s) that cannot be updated", violations)
    canonical = field_mask_pb2.FieldMask()
    canonical.CanonicalFormFromMask(field_mask_pb2.FieldMask(paths=list(paths)))
    return tuple(canonical.paths)


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be updated, or ``None`` when it can."""
    head, separator, rest = path.partition(".")
    if separator and not rest:
        return f'"{path}" is not a field path'
    if head in _NOT_UPDATABLE and not rest:
        return f'"{path}" {_NOT_UPDATABLE[head]}'
    if head in OUTPUT_ONLY_FIELDS:
        return f'"{path}" is output only'
    if head == "draft" and rest:
        return None if rest in DRAFT_FIELDS else f'"{path}" is not a field of AgentConfig'
    if head in MUTABLE_FIELDS and not rest:
        return None
    return f'"{path}" is not an updatable field of Agent'


def populated_paths(patch: agent_pb2.Agent) -> tuple[str, ...]:
    """The mutable fields a request sets to a non-default value (the implied mask of AIP-134)."""
    paths = [name for name in ("description", "display_name") if getattr(patch, name)]
    if patch.labels:
        paths.append("labels")
    paths.extend(f"draft.{field.name}" for field, _value in patch.draft.ListFields())
    return tuple(sorted(paths))


def apply_update_mask(current: agent_pb2.Agent, patch: agent_pb2.Agent, paths: Sequence[str]) -> agent_pb2.Agent:
    """A copy of ``current`` with the masked fields replaced by ``patch``'s values.

    ``paths`` must come from :func:`resolve_update_mask`. Messages, lists and maps named by
    a path are replaced as a whole, never merged.
    """
    updated = agent_pb2.Agent()
    updated.CopyFrom(current)
    mask = field_mask_pb2.FieldMask(paths=list(paths))
    mask.MergeMessage(patch, updated, replace_message_field=True, replace_repeated_field=True)
    return updated
