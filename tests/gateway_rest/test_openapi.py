from __future__ import annotations

import functools
import json
import pathlib
import re
from typing import Any

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from openapi_spec_validator import validate

from gateway_rest.descriptors import Catalog
from gateway_rest.openapi import build_openapi
from gateway_rest.router import Router
from gateway_rest.vocelio_policy import vocelio_is_public, vocelio_operation_extras
from mesh import registry

TESTING_SET = pathlib.Path(__file__).resolve().parents[1] / "gen" / "testing.binpb"
PATH_ITEM_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SCHEMAS = "#/components/schemas/"
FDP = descriptor_pb2.FieldDescriptorProto


@functools.cache
def vocelio_catalog() -> Catalog:
    return Catalog.from_file(registry.default_descriptor_set())


@functools.cache
def conformance_catalog() -> Catalog:
    return Catalog.from_file(TESTING_SET)


@functools.cache
def _vocelio_json() -> str:
    document = build_openapi(
        vocelio_catalog(),
        title="Vocelio API",
        version="0.1.0",
        description="The Vocelio REST API.",
        is_public=vocelio_is_public,
        operation_extras=vocelio_operation_extras,
        servers=["http://127.0.0.1:8080"],
    )
    return json.dumps(document)


@functools.cache
def _conformance_json() -> str:
    return json.dumps(build_openapi(conformance_catalog(), title="Conformance", version="1"))


def vocelio() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_vocelio_json())  # a fresh copy per test
    return document


def conformance() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_conformance_json())
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in PATH_ITEM_METHODS
    ]


def operation(document: dict[str, Any], operation_id: str) -> tuple[str, str, dict[str, Any]]:
    found = [entry for entry in operations(document) if entry[2]["operationId"] == operation_id]
    assert len(found) == 1, operation_id
    return found[0]


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def parameters(op: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == where}


@pytest.mark.parametrize("build", [vocelio, conformance], ids=["vocelio", "conformance"])
def test_document_is_valid_openapi_3_1(build):
    document = build()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation


def test_build_is_deterministic():
    first = build_openapi(conformance_catalog(), title="Conformance", version="1")
    second = build_openapi(conformance_catalog(), title="Conformance", version="1")
    assert json.dumps(first) == json.dumps(second)
    assert list(first["paths"]) == sorted(first["paths"])
    assert list(first["components"]["schemas"]) == sorted(first["components"]["schemas"])


@pytest.mark.parametrize(
    ("catalog", "build"),
    [(vocelio_catalog, vocelio), (conformance_catalog, conformance)],
    ids=["vocelio", "conformance"],
)
def test_every_exposed_binding_appears_exactly_once(catalog, build):
    document = build()
    ordinal: dict[str, int] = {}
    expected: list[str] = []
    for binding in catalog().bindings:
        index = ordinal.get(binding.grpc_path, 0)
        ordinal[binding.grpc_path] = index + 1
        if binding.client_streaming or binding.http_method.lower() not in PATH_ITEM_METHODS:
            continue
        name = f"{binding.method.containing_service.name}_{binding.method.name}" + (f"_{index}" if index else "")
        expected.append(name)
    found = [op["operationId"] for _, _, op in operations(document)]
    assert len(found) == len(set(found)), "duplicate operationIds"
    assert sorted(found) == sorted(expected)


@pytest.mark.parametrize("build", [vocelio, conformance], ids=["vocelio", "conformance"])
def test_no_two_operations_share_a_path_shape_and_method(build):
    seen: dict[tuple[str, str], str] = {}
    for path, method, op in operations(build()):
        shape = re.sub(r"\{[^}]*\}", "{}", path)
        assert (shape, method) not in seen, (path, seen.get((shape, method)))
        seen[(shape, method)] = op["operationId"]


@pytest.mark.parametrize(
    ("catalog", "build"),
    [(vocelio_catalog, vocelio), (conformance_catalog, conformance)],
    ids=["vocelio", "conformance"],
)
def test_every_documented_path_reaches_its_method_through_the_edge_router(catalog, build):
    router = Router(catalog().bindings)
    for path, method, op in operations(build()):
        values = {}
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                values[parameter["name"]] = "a/b" if "slashes" in parameter.get("description", "") else "p1x"
        url = re.sub(r"\{([^}]*)\}", lambda m: values[m.group(1)], path)  # noqa: B023
        binding, _variables = router.match(method.upper(), url)
        assert binding.grpc_path == op["x-grpc-method"], (path, method)


def test_custom_method_and_unbound_methods_are_left_out():
    document = conformance()
    grpc = {op["x-grpc-method"] for _, _, op in operations(document)}
    assert "/conformance.v1.ConformanceService/Describe" not in grpc  # SEARCH
    assert "/conformance.v1.ConformanceService/Collect" not in grpc  # client streaming
    assert "/conformance.v1.ConformanceService/Hidden" not in grpc  # no binding
    omitted = document["x-omitted-operations"]
    assert [o["method"] for o in omitted] == ["SEARCH"]
    assert "SEARCH /v1/{name=shelves/*/items/*}" in document["info"]["description"]


def test_scalar_and_well_known_type_schemas():
    document = conformance()
    item = schema(document, "conformance.v1.Item")["properties"]
    assert item["big"] == {"type": "string", "format": "int64"}
    assert item["ubig"] == {"type": "string", "format": "uint64"}
    assert item["fixed"] == {"type": "string", "format": "uint64"}
    assert item["count"] == {"type": "integer", "format": "int32"}
    assert item["ratio"]["type"] == "number"
    assert item["active"] == {"type": "boolean"}
    assert item["blob"] == {"type": "string", "format": "byte"}
    assert item["createTime"]["type"] == "string"
    assert item["createTime"]["format"] == "date-time"
    assert item["ttl"]["type"] == "string"
    assert re.match(item["ttl"]["pattern"], "1.5s")
    assert item["mask"]["type"] == "string"
    assert item["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert item["tags"] == {"type": "array", "items": {"type": "string"}}
    assert item["numbers"]["items"] == {"type": "string", "format": "int64"}
    assert item["nickname"]["type"] == ["string", "null"]
    assert item["limit"]["type"] == ["string", "null"]
    assert item["limit"]["format"] == "int64"
    assert item["flag"]["type"] == ["boolean", "null"]
    assert item["attributes"]["type"] == "object"
    assert "type" not in item["anything"]  # google.protobuf.Value: any JSON
    assert item["nested"]["$ref"] == SCHEMAS + "conformance.v1.Nested"
    assert item["children"]["items"]["$ref"] == SCHEMAS + "conformance.v1.Nested"
    assert "customJson" in item
    assert "jsonNamed" not in item
    assert "json_named" not in item
    assert "displayName" in item
    assert "display_name" not in item
    assert "oneof `choice`" in item["text"]["description"]
    assert "oneof `choice`" in item["number"]["description"]
    assert "oneof" not in item["maybe"].get("description", "")
    color = schema(document, "conformance.v1.Color")
    assert color["type"] == "string"
    assert color["enum"] == ["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_GREEN"]
    assert item["color"]["$ref"] == SCHEMAS + "conformance.v1.Color"


def test_descriptions_come_from_comments():
    document = vocelio()
    _, _, get_agent = operation(document, "AgentsService_GetAgent")
    assert "Gets one agent" in get_agent["summary"] + get_agent.get("description", "")
    assert get_agent["tags"] == ["AgentsService"]
    tags = {t["name"]: t for t in document["tags"]}
    assert "manages AI voice agents" in tags["AgentsService"]["description"]
    agent = schema(document, "vocelio.agents.v1.Agent")
    assert agent["properties"]["organizationId"]["description"] == "Organisation that owns the agent."
    assert agent["description"].startswith("Agent is an AI voice agent")
    assert schema(conformance(), "conformance.v1.Nested")["properties"]["level"]["description"] == "A level."


def test_field_behavior_marks():
    document = vocelio()
    agent = schema(document, "vocelio.agents.v1.Agent")
    assert agent["properties"]["organizationId"]["readOnly"] is True
    assert agent["properties"]["state"]["readOnly"] is True
    assert "readOnly" not in agent["properties"]["displayName"]
    assert agent["required"] == ["displayName"]


def test_query_parameters_of_a_get_binding():
    _, _, op = operation(conformance(), "ConformanceService_EchoQuery")
    query = parameters(op, "query")
    assert "name" not in query  # bound by the path
    assert query["displayName"]["schema"] == {"type": "string"}
    assert query["tags"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert query["tags"]["explode"] is True
    assert query["big"]["schema"] == {"type": "string", "format": "int64"}
    assert query["nested.level"]["schema"] == {"type": "integer", "format": "int32"}
    assert "nested.inner.note" in query
    assert query["createTime"]["schema"]["format"] == "date-time"
    assert query["limit"]["schema"]["format"] == "int64"  # a wrapper is one text value
    assert query["color"]["schema"]["$ref"] == SCHEMAS + "conformance.v1.Color"
    assert "customJson" in query
    # What the edge cannot read from a query string is not offered.
    for absent in ("labels", "attributes", "anything", "children", "display_name"):
        assert absent not in query


def test_query_parameters_skip_the_body_field_and_vanish_with_a_star_body():
    _, _, tags = operation(conformance(), "ConformanceService_EchoTags")
    query = parameters(tags, "query")
    assert "tags" not in query
    assert "name" not in query
    assert "displayName" in query
    _, _, body = operation(conformance(), "ConformanceService_EchoBody")
    assert parameters(body, "query") == {}
    _, _, fail = operation(conformance(), "ConformanceService_Fail")
    assert parameters(fail, "query") == {}


def test_path_parameters_expand_a_variable_pattern():
    document = conformance()
    path, method, op = operation(document, "ConformanceService_GetItem")
    assert (path, method) == ("/v1/shelves/{shelf}/items/{item}", "get")
    path_params = parameters(op, "path")
    assert set(path_params) == {"shelf", "item"}
    assert all(p["required"] for p in path_params.values())
    assert "`name`" in path_params["item"]["description"]
    assert "shelves/{shelf}/items/{item}" in path_params["item"]["description"]
    assert operation(document, "ConformanceService_GetItem_1")[0] == "/v2/shelves/{shelf}/items/{item}"
    assert operation(document, "ConformanceService_CancelItem")[0] == "/v1/shelves/{shelf}/items/{item}:cancel"
    assert operation(document, "ConformanceService_CreateItem")[0] == "/v1/shelves/{shelf}/items"
    file_path, _, get_file = operation(document, "ConformanceService_GetFile")
    assert file_path == "/v1/files/{path}"
    assert "slashes" in parameters(get_file, "path")["path"]["description"]
    assert (
        operation(vocelio(), "AgentsService_PublishAgent")[0]
        == "/v1/organizations/{organization}/agents/{agent}:publish"
    )


def test_path_bound_fields_are_not_repeated_in_the_body():
    document = conformance()
    _, _, put = operation(document, "ConformanceService_UpdateItem_1")  # PUT, body "*"
    body = put["requestBody"]["content"]["application/json"]["schema"]
    item = body["properties"]["item"]
    assert "name" not in item["properties"]
    assert "displayName" in item["properties"]
    assert "updateMask" in body["properties"]
    _, _, patch = operation(document, "ConformanceService_UpdateItem")  # PATCH, body "item"
    patch_body = patch["requestBody"]["content"]["application/json"]["schema"]
    assert "name" not in patch_body["properties"]
    assert "big" in patch_body["properties"]
    assert "updateMask" in parameters(patch, "query")
    _, _, cancel = operation(document, "ConformanceService_CancelItem")
    assert "name" not in cancel["requestBody"]["content"]["application/json"]["schema"]["properties"]
    _, _, update_agent = operation(vocelio(), "AgentsService_UpdateAgent")
    agent_body = update_agent["requestBody"]["content"]["application/json"]["schema"]
    assert "name" not in agent_body["properties"]
    assert agent_body["required"] == ["displayName"]


def test_body_field_and_response_body_schemas():
    document = conformance()
    _, _, create = operation(document, "ConformanceService_CreateItem")
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "conformance.v1.Item"}
    assert "itemId" in parameters(create, "query")
    _, _, tags = operation(document, "ConformanceService_EchoTags")
    assert tags["requestBody"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    _, _, nested = operation(document, "ConformanceService_GetNested")
    assert nested["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": SCHEMAS + "conformance.v1.Nested"
    }
    _, _, get_tags = operation(document, "ConformanceService_GetTags")
    assert get_tags["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    _, _, get_agent = operation(vocelio(), "AgentsService_GetAgent")
    assert get_agent["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": SCHEMAS + "vocelio.agents.v1.Agent"
    }


def test_http_body_request_and_response_are_raw_bytes():
    document = conformance()
    binary = {"type": "string", "format": "binary"}
    _, _, upload = operation(document, "ConformanceService_Upload")
    assert upload["requestBody"]["content"] == {"*/*": {"schema": binary}}
    _, _, download = operation(document, "ConformanceService_Download")
    assert download["responses"]["200"]["content"] == {"*/*": {"schema": binary}}
    _, _, stream_download = operation(document, "ConformanceService_StreamDownload")
    assert stream_download["responses"]["200"]["content"] == {"*/*": {"schema": binary}}


def test_server_streaming_is_ndjson_or_sse():
    document = conformance()
    path, _, stream = operation(document, "ConformanceService_StreamItems")
    assert path == "/v1/shelves/{shelf}/items:stream"
    content = stream["responses"]["200"]["content"]
    assert set(content) == {"application/x-ndjson", "text/event-stream"}
    line = content["application/x-ndjson"]["schema"]
    assert line["properties"]["result"] == {"$ref": SCHEMAS + "conformance.v1.Item"}
    assert line["properties"]["error"] == {"$ref": SCHEMAS + "google.rpc.Status"}
    assert "event: error" in content["text/event-stream"]["schema"]["description"]
    assert "count" in parameters(stream, "query")


def test_errors_are_google_rpc_status():
    document = conformance()
    status = schema(document, "google.rpc.Status")
    assert status["properties"]["code"]["type"] == "integer"
    assert status["properties"]["message"]["type"] == "string"
    assert status["properties"]["details"]["items"] == {"$ref": SCHEMAS + "google.protobuf.Any"}
    assert "@type" in schema(document, "google.protobuf.Any")["properties"]
    responses = document["components"]["responses"]
    assert "UNAVAILABLE 503" in responses["Error"]["description"]
    _, _, op = operation(document, "ConformanceService_GetItem")
    for code in ("400", "401", "403", "404", "409", "429", "500", "503", "default"):
        reference = op["responses"][code]["$ref"]
        target = responses[reference.removeprefix("#/components/responses/")]
        assert target["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "google.rpc.Status"}


def test_security_public_and_protected_operations():
    document = vocelio()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert document["security"] == [{"bearerAuth": []}, {"apiKey": []}]
    path, method, token = operation(document, "IdentityService_IssueToken")
    assert (path, method) == ("/v1/auth/token", "post")
    assert token["security"] == []
    assert "400" in token["responses"]
    _, _, get_agent = operation(document, "AgentsService_GetAgent")
    assert "security" not in get_agent  # the global requirement applies
    assert get_agent["x-vocelio-permission"] == "agents.get"
    assert get_agent["x-vocelio-rate-limit-class"] == "RATE_LIMIT_CLASS_READ"
    assert "x-vocelio-permission" not in token
    assert document["servers"] == [{"url": "http://127.0.0.1:8080"}]
    assert document["info"]["description"].startswith("The Vocelio REST API.")


def test_without_is_public_every_operation_needs_a_credential():
    assert all("security" not in op for _, _, op in operations(conformance()))


def test_operation_extras_must_be_extensions():
    with pytest.raises(ValueError, match="x- extensions"):
        build_openapi(conformance_catalog(), title="t", version="1", operation_extras=lambda _method: {"summary": "x"})


def _synthetic_catalog(rules: list[tuple[str, str, str]]) -> Catalog:
    """A one-file catalogue: message tree.v1.Node (recursive) and TreeService with one method per rule."""
    fds = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, http_pb2, annotations_pb2):
        module.DESCRIPTOR.CopyToProto(fds.file.add())
    file = fds.file.add(name="tree.proto", package="tree.v1", syntax="proto3")
    file.dependency.append("google/api/annotations.proto")
    node = file.message_type.add(name="Node")
    node.field.add(name="name", number=1, type=FDP.TYPE_STRING, label=FDP.LABEL_OPTIONAL, json_name="name")
    node.field.add(
        name="parent_node",
        number=2,
        type=FDP.TYPE_MESSAGE,
        type_name=".tree.v1.Node",
        label=FDP.LABEL_OPTIONAL,
        json_name="parentNode",
    )
    node.field.add(
        name="children",
        number=3,
        type=FDP.TYPE_MESSAGE,
        type_name=".tree.v1.Node",
        label=FDP.LABEL_REPEATED,
        json_name="children",
    )
    service = file.service.add(name="TreeService")
    for name, verb, template in rules:
        method = service.method.add(name=name, input_type=".tree.v1.Node", output_type=".tree.v1.Node")
        setattr(method.options.Extensions[annotations_pb2.http], verb, template)
    return Catalog(fds)


def _recursive_catalog() -> Catalog:
    return _synthetic_catalog([("GetNode", "get", "/v1/{name=nodes/*}")])


def test_paths_differing_only_in_parameter_names_are_merged():
    catalog = _synthetic_catalog(
        [
            ("GetNode", "get", "/v1/{name=nodes/*}"),
            ("DeleteNode", "delete", "/v1/nodes/{name}"),
            ("ShadowedNode", "get", "/v1/nodes/{name}"),
        ]
    )
    document = build_openapi(catalog, title="Tree", version="1")
    validate(document)
    assert list(document["paths"]) == ["/v1/nodes/{node}"]
    _, method, delete = operation(document, "TreeService_DeleteNode")
    assert method == "delete"
    assert [p["name"] for p in delete["parameters"] if p["in"] == "path"] == ["node"]
    # Same path and method as GetNode: the edge routes it to GetNode, so it is not offered.
    assert [o["operation"] for o in document["x-omitted-operations"]] == ["/tree.v1.TreeService/ShadowedNode"]
    router = Router(catalog.bindings)
    assert router.match("GET", "/v1/nodes/n1")[0].method.name == "GetNode"


def test_recursive_message():
    document = build_openapi(_recursive_catalog(), title="Tree", version="1")
    validate(document)
    node = schema(document, "tree.v1.Node")
    assert node["properties"]["parentNode"] == {"$ref": SCHEMAS + "tree.v1.Node"}
    assert node["properties"]["children"]["items"] == {"$ref": SCHEMAS + "tree.v1.Node"}
    _, _, op = operation(document, "TreeService_GetNode")
    # Query parameters follow the recursion only until the message repeats.
    assert set(parameters(op, "query")) == set()
    assert set(parameters(op, "path")) == {"node"}


def test_every_reference_resolves():
    document = vocelio()
    # Every $ref points at a component that exists.
    text = json.dumps(document)
    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert name in document["components"]["schemas"], name
    for name in set(re.findall(r'"#/components/responses/([^"]+)"', text)):
        assert name in document["components"]["responses"], name
