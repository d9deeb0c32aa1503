"""No enum or message is declared twice across packages: shared types live in vocelio.common.v1.

Two types of different packages are copies when they share a simple name, or (enums) the
same set of value names after their prefix, or (messages) the same set of field names.
Per-RPC messages (``…Request``/``…Response``), event payloads and ``ErrorReason`` are one per
RPC, event and service by rule and are left out.
"""

from __future__ import annotations

import re
from collections import defaultdict

from google.protobuf import descriptor_pb2

from mesh.registry import default_descriptor_set
from vocelio.api.v1 import event_pb2

FILES = [
    file
    for file in descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_set().read_bytes()).file
    if file.package.startswith("vocelio.")
]
# Reviewed: the state machines of different resources whose states happen to share names.
# Each has its own transitions (an ApiKey never expires back to ACTIVE, a ConsentRecord can),
# so one shared enum would document neither.
SAME_VALUES_ALLOWED = {
    frozenset({"vocelio.agents.v1.AgentState", "vocelio.flow_builder.v1.FlowState", "vocelio.scripts.v1.ScriptState"}),
    frozenset({"vocelio.compliance.v1.ConsentState", "vocelio.developer_api.v1.ApiKeyState"}),
    frozenset({"vocelio.integrations.v1.SyncRunState", "vocelio.webhooks.v1.WebhookReplayState"}),
    frozenset({"vocelio.team_hub.v1.OrganizationState", "vocelio.white_label.v1.SubAccountState"}),
}


def _prefix(enum_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"


def _types():
    """(kind, full name, package, simple name, shape) of every enum and message."""

    def messages(package, scope, message):
        full = f"{scope}.{message.name}"
        if not message.options.map_entry:
            yield "message", full, package, message.name, frozenset(f.name for f in message.field), message
        for nested in message.nested_type:
            yield from messages(package, full, nested)
        for enum in message.enum_type:
            yield enums(package, full, enum)

    def enums(package, scope, enum):
        shape = frozenset(v.name.removeprefix(_prefix(enum.name)) for v in enum.value if v.number)
        return "enum", f"{scope}.{enum.name}", package, enum.name, shape, enum

    for file in FILES:
        for enum in file.enum_type:
            yield enums(file.package, file.package, enum)
        for message in file.message_type:
            yield from messages(file.package, file.package, message)


def _by_rule(kind: str, name: str, element) -> bool:
    if kind == "enum":
        return name == "ErrorReason"
    return name.endswith(("Request", "Response")) or element.options.HasExtension(event_pb2.event)


def test_no_type_is_copied_into_another_package():
    by_name, by_shape = defaultdict(list), defaultdict(list)
    for kind, full, package, name, shape, element in _types():
        if _by_rule(kind, name, element):
            continue
        by_name[(kind, name)].append((full, package))
        if len(shape) >= 2:
            by_shape[(kind, shape)].append((full, package))
    copies = []
    for (kind, _shape), found in [*by_name.items(), *by_shape.items()]:
        packages = {package for _, package in found}
        names = frozenset(full for full, _ in found)
        if len(packages) > 1 and names not in SAME_VALUES_ALLOWED:
            copies.append(f"{kind} {sorted(names)}")
    assert not copies, "move these to vocelio.common.v1:\n" + "\n".join(sorted(copies))


def test_the_allow_list_is_still_needed():
    shapes = defaultdict(set)
    for kind, full, _, name, shape, element in _types():
        if kind == "enum" and not _by_rule(kind, name, element):
            shapes[shape].add(full)
    assert {frozenset(names) for names in shapes.values()} >= SAME_VALUES_ALLOWED
