"""The naming rules of docs/CONTRACTS.md, checked over the descriptor set.

- Every resource pattern is scoped to an organisation (AIP-122:
  ``organizations/{organization}/…``) unless it is one of the documented
  platform-global resources.
- Every non-idempotent mutating RPC takes a documented ``request_id`` (AIP-155,
  UUID4).
- Every field that names another resource carries ``google.api.resource_reference``,
  and every referenced type exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from google.api import field_behavior_pb2, field_info_pb2, resource_pb2
from google.protobuf import descriptor_pb2

from mesh.registry import default_descriptor_set, default_registry

REGISTRY = default_registry()
FILES = [
    f
    for f in descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_set().read_bytes()).file
    if f.package.startswith("vocelio.")
]


# The platform-global patterns of docs/CONTRACTS.md ("What stays platform-global").
PLATFORM_GLOBAL = {
    "vocelio.com/Organization": {"organizations/{organization}"},
    "vocelio.com/User": {"users/{user}"},
    "vocelio.com/Session": {"sessions/{session}"},
    "vocelio.com/SigningKey": {"signing_keys/{signing_key}"},
    "vocelio.com/RoleDefinition": {"roles/{role}"},
    "vocelio.com/RatePlan": {"rate_plans/{rate_plan}"},
    "vocelio.com/Voice": {"voices/{voice}"},
    "vocelio.com/Listing": {"listings/{listing}"},
    "vocelio.com/ListingVersion": {"listings/{listing}/versions/{version}"},
    "vocelio.com/Review": {"listings/{listing}/reviews/{review}"},
    "vocelio.com/WebhookEventType": {"webhook_event_types/{webhook_event_type}"},
    "vocelio.com/AnalyticsProjection": {"analytics_projections/{analytics_projection}"},
    "vocelio.com/Event": {"events/{event}"},
    "vocelio.com/EventStream": {"event_streams/{event_stream}"},
    "vocelio.com/ConsumerCheckpoint": {"consumer_checkpoints/{consumer_checkpoint}"},
    "vocelio.com/AuditEvent": {"audit_events/{audit_event}"},
}

ORG_SCOPED = re.compile(r"^organizations/\{organization\}(/[a-z][a-z0-9_]*(/\{[a-z][a-z0-9_]*\})?)+$")

# Reads and streams never take a request_id; everything else that is not idempotent does.
READ_PREFIXES = ("Get", "List", "BatchGet", "Search", "Watch")
# Non-idempotent methods that cannot replay a first result, each with the reason (reviewed).
NOT_DEDUPLICATED = {
    # The RFC 6749 token endpoint: its response is freshly minted secrets, which are never
    # stored, so there is nothing to replay. A retried password grant just issues another
    # token pair; a retried refresh grant is refresh-token reuse, which RFC 6819 §5.2.2.3
    # requires to revoke the session.
    "/vocelio.identity.v1.IdentityService/IssueToken",
}
REQUEST_ID_SCOPE = ("unique per organisation and method for 24 hours", "invalid_argument")

# String fields the heuristic flags that do not hold a resource name (reviewed).
NOT_REFERENCES = {
    # an E.164 number, a SIP URI or an agent: a destination, not a reference
    "vocelio.call_center.v1.Call.transfer_destination",
    # a user, an email address or a masked URL depending on the channel
    "vocelio.notifications.v1.Notification.recipient",
    # a resource name or a console URL
    "vocelio.notifications.v1.Notification.link",
    # the number as the caller typed it, reported back in an import error
    "vocelio.campaigns.v1.ContactRowError.phone_number",
    # the tool name or the model-facing function name a simulation called
    "vocelio.flow_builder.v1.SimulatedToolCall.tool",
    # third-party credentials, not Vocelio API keys
    "vocelio.integrations.v1.ApiKeyCredentials.api_key",
    "vocelio.phone_numbers.v1.ProviderCredentials.api_key",
    # role names as in the token's `role` claim ("ADMIN"), not roles/{role} resource names
    "vocelio.identity.v1.Actor.role",
    "vocelio.identity.v1.SignUpResponse.role",
    "vocelio.identity.v1.GetCurrentUserResponse.role",
    "vocelio.identity.v1.OrganizationMembership.role",
}

_SEGMENT = r"(?:[a-z_]+|\{[a-z_…]+\}|-|\*|…)"
QUOTED_NAME = re.compile(rf'"({_SEGMENT}(?:/{_SEGMENT})+)')


def _service_of(package: str) -> str:
    return package.split(".")[1]


Located = tuple[str, tuple[int, ...], descriptor_pb2.DescriptorProto]


def _messages(file: descriptor_pb2.FileDescriptorProto) -> Iterator[Located]:
    def walk(messages, prefix: str, path: tuple[int, ...]):
        for index, message in enumerate(messages):
            full = f"{prefix}.{message.name}"
            yield full, (*path, index), message
            yield from walk(message.nested_type, full, (*path, index, 3))

    yield from walk(file.message_type, file.package, (4,))


def _resources() -> Iterator[tuple[str, str, resource_pb2.ResourceDescriptor]]:
    for file in FILES:
        for full, _, message in _messages(file):
            resource = message.options.Extensions[resource_pb2.resource]
            if resource.type:
                yield _service_of(file.package), full, resource


RESOURCES = list(_resources())
KNOWN_TYPES = {resource.type for _, _, resource in RESOURCES}
SHAPES = {
    re.sub(r"\{[a-z_]+\}", "*", pattern): resource.type for _, _, resource in RESOURCES for pattern in resource.pattern
}
# The singular and plural words of every resource ("call", "calls", "compliance_policy").
RESOURCE_WORDS = {
    word
    for _, _, resource in RESOURCES
    for pattern in resource.pattern
    for word in (
        [*re.findall(r"\{([a-z_]+)\}$", pattern), pattern.rsplit("/", 1)[-1]]
        if pattern.endswith("}")
        else [pattern.rsplit("/", 1)[-1]]
    )
} - {"organization", "version", "name"}


def _pattern_ids() -> list[tuple[str, str, str]]:
    return [(service, resource.type, pattern) for service, _, resource in RESOURCES for pattern in resource.pattern]


@pytest.mark.parametrize(("service", "resource_type", "pattern"), _pattern_ids(), ids=lambda value: str(value))
def test_every_pattern_is_scoped_to_an_organisation_or_documented_as_platform_global(
    service: str, resource_type: str, pattern: str
):
    if pattern in PLATFORM_GLOBAL.get(resource_type, set()):
        return
    assert ORG_SCOPED.match(pattern), (
        f"{resource_type}: {pattern!r} is neither organizations/{{organization}}/… nor documented as platform-global"
    )


def test_every_documented_platform_global_pattern_exists():
    declared = {(resource.type, pattern) for _, _, resource in RESOURCES for pattern in resource.pattern}
    missing = [(t, p) for t, patterns in PLATFORM_GLOBAL.items() for p in patterns if (t, p) not in declared]
    assert not missing, "the allow-list names patterns no proto declares"


def test_singletons_and_collections_use_one_style():
    """lower_snake segments everywhere: no camelCase singleton beside a snake_case one."""
    for _, _, resource in RESOURCES:
        for pattern in resource.pattern:
            for segment in pattern.split("/"):
                if not segment.startswith("{"):
                    assert re.fullmatch(r"[a-z][a-z0-9_]*", segment), f"{pattern}: segment {segment!r}"


def _mutating_methods():
    for service in REGISTRY:
        for method in service.methods:
            assert method.policy is not None
            if method.policy.idempotent or method.name.startswith(READ_PREFIXES):
                continue
            if method.path in NOT_DEDUPLICATED:
                continue
            if method.server_streaming and method.name.startswith("Stream") and method.name != "StreamSynthesis":
                continue
            yield service, method


MUTATING = list(_mutating_methods())


def _comment(file_name: str, path: tuple[int, ...]) -> str:
    file = next(f for f in FILES if f.name == file_name)
    for location in file.source_code_info.location:
        if tuple(location.path) == path:
            return location.leading_comments
    return ""


def _field_path(message_full_name: str, field_name: str) -> tuple[str, tuple[int, ...]]:
    for file in FILES:
        for full, path, message in _messages(file):
            if full == message_full_name:
                index = next(i for i, f in enumerate(message.field) if f.name == field_name)
                return file.name, (*path, 2, index)
    raise LookupError(message_full_name)


def test_the_known_non_idempotent_methods_are_all_checked():
    names = {method.name for _, method in MUTATING}
    assert {"TransferCall", "StartCampaign", "ResumeCampaign", "CheckDialEligibility", "SynthesizeSpeech"} <= names


@pytest.mark.parametrize(("service", "method"), MUTATING, ids=[m.path for _, m in MUTATING])
def test_every_non_idempotent_mutation_takes_a_documented_uuid4_request_id(service, method):
    request = REGISTRY.pool.FindMessageTypeByName(method.input_type)
    field = request.fields_by_name.get("request_id")
    assert field is not None, f"{method.path} is not idempotent and has no request_id"
    assert field.type == field.TYPE_STRING
    options = field.GetOptions()
    assert options.Extensions[field_info_pb2.field_info].format == field_info_pb2.FieldInfo.UUID4
    assert field_behavior_pb2.OPTIONAL in options.Extensions[field_behavior_pb2.field_behavior]
    comment = " ".join(_comment(*_field_path(request.full_name, "request_id")).lower().split())
    for phrase in REQUEST_ID_SCOPE:
        assert phrase in comment, f"{method.path}: request_id comment does not state its scope ({phrase!r})"


def _reference_candidates():
    """String fields that name a resource: by their comment or by their name."""
    for file in FILES:
        comments = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
        for full, path, message in _messages(file):
            own = message.options.Extensions[resource_pb2.resource].type
            for index, field in enumerate(message.field):
                if field.type != field.TYPE_STRING or field.name.endswith("_id"):
                    continue
                if field.name == "name" and own:
                    continue  # the resource's own name (IDENTIFIER)
                comment = comments.get((*path, 2, index), "")
                quoted = {re.sub(r"\{[a-z_…]+\}|-|…", "*", q.rstrip("/")) for q in QUOTED_NAME.findall(comment)}
                word = re.sub(r"^(source|destination|from|to|last|default|fallback|open)_", "", field.name)
                by_name = word in RESOURCE_WORDS
                if quoted & set(SHAPES) or by_name:
                    yield f"{full}.{field.name}", field, quoted & set(SHAPES)


CANDIDATES = list(_reference_candidates())


def test_the_heuristic_finds_the_fields_the_issue_counted():
    assert len(CANDIDATES) > 300


@pytest.mark.parametrize(("full_name", "field", "shapes"), CANDIDATES, ids=[c[0] for c in CANDIDATES])
def test_every_field_that_names_a_resource_says_which(full_name: str, field, shapes: set[str]):
    reference = field.options.Extensions[resource_pb2.resource_reference]
    if full_name in NOT_REFERENCES:
        assert not reference.type and not reference.child_type, f"{full_name} is allow-listed but annotated"
        return
    assert reference.type or reference.child_type, f"{full_name} names a resource but has no resource_reference"
    named = {SHAPES[s] for s in shapes}
    if reference.type and reference.type != "*" and named:
        assert reference.type in named, f"{full_name}: comment names {sorted(named)}, reference says {reference.type}"


def test_every_referenced_type_exists():
    unknown = []
    for file in FILES:
        for full, _, message in _messages(file):
            for field in message.field:
                reference = field.options.Extensions[resource_pb2.resource_reference]
                for kind in (reference.type, reference.child_type):
                    if kind and kind != "*" and kind not in KNOWN_TYPES:
                        unknown.append(f"{full}.{field.name}: {kind}")
    assert not unknown


def test_allow_listed_non_references_still_exist():
    names = {name for name, _, _ in CANDIDATES}
    assert names >= NOT_REFERENCES, sorted(NOT_REFERENCES - names)
