"""Walk every method of every service from the descriptors and check the contract rules.

These are the rules of docs/CONTRACTS.md that buf lint does not know: every RPC has a
policy, every public RPC a REST binding, routes never collide, AIP standard methods have
their standard shape, and every element carries the comment that becomes its API doc.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from google.api import http_pb2
from google.protobuf import descriptor, descriptor_pb2

from mesh.registry import MethodSpec, ServiceSpec, default_descriptor_set, default_registry
from vocelio.api.v1 import policy_pb2

EXPECTED_PORTS = {
    "overview": 8001,
    "agents": 8002,
    "campaigns": 8003,
    "call_center": 8004,
    "phone_numbers": 8005,
    "voice_marketplace": 8006,
    "analytics": 8007,
    "flow_builder": 8008,
    "ai_brain": 8009,
    "integrations": 8010,
    "voice_lab": 8011,
    "agent_store": 8012,
    "billing": 8013,
    "team_hub": 8014,
    "compliance": 8015,
    "white_label": 8016,
    "developer_api": 8017,
    "settings": 8018,
    "scripts": 8019,
    "notifications": 8020,
    "webhooks": 8021,
    "identity": 8022,
    "events": 8023,
}
PERMISSION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-zA-Z0-9_]*)+$")
REGISTRY = default_registry()
METHODS = [(service, method) for service in REGISTRY for method in service.methods]
METHOD_IDS = [method.path for _, method in METHODS]


def _bindings(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *rule.additional_bindings]


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return (kind or "").upper(), getattr(rule, kind) if kind else ""


def _input(method: MethodSpec) -> descriptor.Descriptor:
    return REGISTRY.pool.FindMessageTypeByName(method.input_type)


def _output(method: MethodSpec) -> descriptor.Descriptor:
    return REGISTRY.pool.FindMessageTypeByName(method.output_type)


def _field_path(message: descriptor.Descriptor | None, path: str) -> descriptor.FieldDescriptor | None:
    field = None
    for part in path.split("."):
        if message is None:
            return None
        field = message.fields_by_name.get(part)
        if field is None:
            return None
        message = field.message_type
    return field


def test_the_registry_holds_every_service_on_its_port():
    assert {s.name: s.contract_port for s in REGISTRY} == EXPECTED_PORTS


@pytest.mark.parametrize("service", list(REGISTRY), ids=lambda s: s.name)
def test_service_option_matches_the_package(service: ServiceSpec):
    assert service.package == f"vocelio.{service.name}.v1"
    assert service.full_name.endswith("Service")
    assert service.title
    assert service.title != service.name
    assert service.methods, "a service without methods"


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_every_method_has_a_complete_policy(service: ServiceSpec, method: MethodSpec):
    policy = method.policy
    assert policy is not None, f"{method.path} has no (vocelio.api.v1.policy)"
    assert policy.rate_limit_class != policy_pb2.RATE_LIMIT_CLASS_UNSPECIFIED
    if policy.public:
        assert not policy.permission, "a public method names no permission"
        assert not policy.internal, "a method cannot be both public and internal"
    else:
        assert PERMISSION.match(policy.permission), f"bad permission {policy.permission!r}"
    if method.server_streaming:
        assert policy.rate_limit_class == policy_pb2.RATE_LIMIT_CLASS_STREAM


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_every_public_method_is_bound_to_rest(service: ServiceSpec, method: MethodSpec):
    assert method.policy is not None
    if method.policy.internal:
        assert method.http is None, "internal methods are not exposed at the edge"
        return
    assert method.http is not None, f"{method.path} has no google.api.http binding"
    request = _input(method)
    response = _output(method)
    for rule in _bindings(method.http):
        verb, path = _verb_and_path(rule)
        assert verb in {"GET", "POST", "PUT", "PATCH", "DELETE"}, verb
        assert path.startswith(("/v1/", "/.well-known/")), path
        for variable in re.findall(r"\{([^}=]+)(?:=[^}]*)?\}", path):
            field = _field_path(request, variable)
            assert field is not None, f"path variable {variable} is not a request field"
            assert field.type == descriptor.FieldDescriptor.TYPE_STRING or field.message_type is None
        if rule.body and rule.body != "*":
            assert rule.body in request.fields_by_name, f"body {rule.body} is not a request field"
        if verb in {"GET", "DELETE"}:
            assert not rule.body, f"{verb} must not take a body"
        if rule.response_body:
            assert rule.response_body in response.fields_by_name


def test_no_two_routes_collide():
    routes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for _, method in METHODS:
        if method.http is None:
            continue
        for rule in _bindings(method.http):
            verb, path = _verb_and_path(rule)
            shape = re.sub(r"\{[^}=]+=([^}]*)\}", r"\1", path)
            shape = re.sub(r"\{[^}]+\}", "*", shape)
            routes[(verb, shape)].append(method.path)
    clashes = {route: paths for route, paths in routes.items() if len(paths) > 1}
    assert not clashes


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_request_and_response_are_named_after_the_method(service: ServiceSpec, method: MethodSpec):
    assert method.input_type == f"{service.package}.{method.name}Request"
    assert method.output_type == f"{service.package}.{method.name}Response"


@pytest.mark.parametrize(("service", "method"), METHODS, ids=METHOD_IDS)
def test_standard_methods_have_their_standard_shape(service: ServiceSpec, method: MethodSpec):
    request = _input(method)
    response = _output(method)
    verb = _verb_and_path(method.http)[0] if method.http else None
    if method.name.startswith("List") and not method.server_streaming:
        assert request.fields_by_name["page_size"].type == descriptor.FieldDescriptor.TYPE_INT32
        assert request.fields_by_name["page_token"].type == descriptor.FieldDescriptor.TYPE_STRING
        assert "next_page_token" in response.fields_by_name
        assert any(f.is_repeated for f in response.fields)
        assert verb in (None, "GET")
    elif method.name.startswith("Get"):
        assert verb in (None, "GET")
    elif method.name.startswith("Update"):
        mask = request.fields_by_name.get("update_mask")
        assert mask is not None
        assert mask.message_type is not None
        assert mask.message_type.full_name == "google.protobuf.FieldMask"
        assert verb in (None, "PATCH")
    elif method.name.startswith("Delete"):
        assert verb in (None, "DELETE")
    elif method.name.startswith("Create"):
        assert verb in (None, "POST")


def test_money_is_never_a_float():
    suspicious = re.compile(r"(cost|price|amount|balance|charge|spend|budget)", re.I)
    floats = (descriptor.FieldDescriptor.TYPE_FLOAT, descriptor.FieldDescriptor.TYPE_DOUBLE)
    offenders = []
    for file_name in _vocelio_files():
        file = REGISTRY.pool.FindFileByName(file_name)
        for message in _all_messages(file.message_types_by_name.values()):
            for field in message.fields:
                is_ratio = field.name.endswith(("_ratio", "_rate", "_percent"))
                if field.type in floats and suspicious.search(field.name) and not is_ratio:
                    offenders.append(field.full_name)
    assert not offenders, "money must be vocelio.common.v1.Money (integer micros)"


def test_every_element_is_documented():
    """Comments become the public API docs: services, methods, messages, fields, enums, values."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_set().read_bytes())
    undocumented = []
    for file in fds.file:
        if not file.package.startswith("vocelio."):
            continue
        commented = {tuple(loc.path) for loc in file.source_code_info.location if loc.leading_comments.strip()}
        for path, name in _element_paths(file):
            if path not in commented:
                undocumented.append(f"{file.name}: {name}")
    assert not undocumented, "\n".join(undocumented[:50])


def _vocelio_files() -> list[str]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_set().read_bytes())
    return [f.name for f in fds.file if f.package.startswith("vocelio.")]


def _all_messages(messages):
    for message in messages:
        yield message
        yield from _all_messages(message.nested_types)


def _element_paths(file: descriptor_pb2.FileDescriptorProto):
    # Field numbers of FileDescriptorProto / DescriptorProto used in SourceCodeInfo paths.
    for s_index, service in enumerate(file.service):
        yield (6, s_index), service.name
        for m_index, method in enumerate(service.method):
            yield (6, s_index, 2, m_index), f"{service.name}.{method.name}"
    for e_index, enum in enumerate(file.enum_type):
        yield from _enum_paths((5, e_index), enum, enum.name)
    for index, message in enumerate(file.message_type):
        yield from _message_paths((4, index), message, message.name)


def _message_paths(path, message: descriptor_pb2.DescriptorProto, name: str):
    if message.options.map_entry:
        return
    yield path, name
    for f_index, field in enumerate(message.field):
        yield (*path, 2, f_index), f"{name}.{field.name}"
    for n_index, nested in enumerate(message.nested_type):
        yield from _message_paths((*path, 3, n_index), nested, f"{name}.{nested.name}")
    for e_index, enum in enumerate(message.enum_type):
        yield from _enum_paths((*path, 4, e_index), enum, f"{name}.{enum.name}")


def _enum_paths(path, enum: descriptor_pb2.EnumDescriptorProto, name: str):
    yield path, name
    for v_index, value in enumerate(enum.value):
        yield (*path, 2, v_index), f"{name}.{value.name}"
