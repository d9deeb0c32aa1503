"""An OpenAPI 3.1 document of the REST edge, built from the gRPC descriptors.

The document describes what the edge does (see :mod:`gateway_rest.request_builder`):

* One operation per ``google.api.http`` binding. Client-streaming methods, methods
  without a binding and custom HTTP methods that OpenAPI cannot name (``SEARCH``) are
  left out; the latter are listed under ``x-omitted-operations``.
* Paths: a template variable that spans one segment (``{name}``, ``{path=**}``) is one
  parameter named after the field's JSON path. A variable with a pattern
  (``{name=shelves/*/items/*}``) is written out with one parameter per wildcard, named
  after the literal segment before it in the singular (``/v1/shelves/{shelf}/items/{item}``);
  the edge joins the segments back into the field. A custom verb stays in the path
  (``/v1/organizations/{organization}/agents/{agent}:publish``).
* Query parameters: with a body other than ``*``, every scalar, enum, repeated-scalar and
  text well-known-type leaf that the path and the body do not cover, nested ones as
  ``parent.child`` (three levels at most), by JSON name; repeated ones repeat the name.
* Bodies and responses in ProtoJSON (components keyed by full message name); HttpBody as
  raw bytes; server streams as NDJSON or server-sent events; errors as
  ``google.rpc.Status``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import descriptor

from gateway_rest.descriptors import Binding, Catalog
from gateway_rest.fields import FieldError, resolve
from gateway_rest.openapi_schemas import (
    ANY,
    FD,
    HTTP_BODY,
    REQUIRED,
    STATUS,
    TEXT_WKT,
    Comments,
    Schema,
    SchemaRegistry,
    any_schema,
    behaviors,
    is_map,
    ref,
    status_schema,
    summary_of,
)
from gateway_rest.request_builder import IGNORED_QUERY_PARAMETERS

PublicCheck = Callable[[descriptor.MethodDescriptor], bool]
OperationExtras = Callable[[descriptor.MethodDescriptor], Mapping[str, Any]]

_PATH_ITEM_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_MAX_QUERY_DEPTH = 3
_BINARY: Schema = {"type": "string", "format": "binary"}

CONVENTIONS = """\
Every operation is a gRPC method transcoded by the REST edge from its `google.api.http` rule.
Bodies are ProtoJSON: field names in lowerCamelCase (proto names are accepted too), 64-bit
integers as strings, bytes as base64, enums by name, Timestamps in RFC 3339 and Durations
such as "1.5s". Responses include fields that hold their zero value (0, "", false, [] and {})
and omit message fields that are unset. A repeated query parameter repeats its name
(`?tags=a&tags=b`). Errors are `google.rpc.Status` objects."""

_ERROR_MAPPING = """\
The gRPC status maps to the HTTP status as in google/rpc/code.proto:
CANCELLED 499, UNKNOWN 500, INVALID_ARGUMENT 400, DEADLINE_EXCEEDED 504, NOT_FOUND 404,
ALREADY_EXISTS 409, PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429, FAILED_PRECONDITION 400,
ABORTED 409, OUT_OF_RANGE 400, UNIMPLEMENTED 501, INTERNAL 500, UNAVAILABLE 503,
DATA_LOSS 500, UNAUTHENTICATED 401. The edge itself answers 404 when no route matches,
405 (with `Allow`) for a wrong method, 413 for an oversized body and 415 for a JSON
body that is not `application/json`."""

_ERRORS = (
    ("400", "BadRequest", "The request is malformed (INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE)."),
    ("401", "Unauthenticated", "No valid credential (UNAUTHENTICATED)."),
    ("403", "PermissionDenied", "The caller lacks the permission (PERMISSION_DENIED)."),
    ("404", "NotFound", "The resource does not exist (NOT_FOUND)."),
    ("409", "Conflict", "The resource exists or changed meanwhile (ALREADY_EXISTS or ABORTED)."),
    ("429", "ResourceExhausted", "A rate limit or quota is exhausted (RESOURCE_EXHAUSTED)."),
    ("500", "InternalError", "The server failed (INTERNAL, UNKNOWN or DATA_LOSS)."),
    ("503", "Unavailable", "The service is unavailable; retry with back-off (UNAVAILABLE)."),
)


def build_openapi(
    catalog: Catalog,
    *,
    title: str,
    version: str,
    description: str = "",
    is_public: PublicCheck | None = None,
    operation_extras: OperationExtras | None = None,
    servers: Sequence[str | Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the edge in front of a catalogue's services.

    Args:
        catalog: the descriptors and bindings the edge serves.
        title: ``info.title``.
        version: ``info.version``.
        description: ``info.description``; the JSON conventions (and the operations left
            out, if any) are appended.
        is_public: whether a method needs no credential; such operations get
            ``security: []``. Without it every operation needs one.
        operation_extras: extension properties (``x-…``) to add to a method's operations.
        servers: ``servers`` entries, as URLs or Server Objects.

    Returns:
        The document, as JSON-ready dictionaries, deterministic for a given catalogue.

    Raises:
        ValueError: ``operation_extras`` returned a key that is not an ``x-`` extension.

    """
    registry = SchemaRegistry(Comments(catalog.file_protos))
    registry.add_component(STATUS, status_schema())
    registry.add_component(ANY, any_schema())
    tags = _tag_names(catalog)
    paths: dict[str, dict[str, Any]] = {}
    shapes: dict[str, str] = {}  # path with anonymous parameters -> the path as written
    omitted: list[dict[str, str]] = []
    used_tags: set[str] = set()
    ordinal: dict[str, int] = {}
    for binding in catalog.bindings:
        index = ordinal.get(binding.grpc_path, 0)
        ordinal[binding.grpc_path] = index + 1
        if binding.client_streaming:
            continue
        method = binding.http_method.lower()
        source = {"method": binding.http_method, "path": binding.template.source, "operation": binding.grpc_path}
        if method not in _PATH_ITEM_METHODS:
            omitted.append({**source, "reason": "OpenAPI 3.1 cannot describe this HTTP method"})
            continue
        path, path_parameters, notes = _render_path(binding, registry)
        shape = re.sub(r"\{[^}]*\}", "{}", path)
        if shapes.setdefault(shape, path) != path:
            path, path_parameters = _rename(shapes[shape], path, path_parameters)
        item = paths.setdefault(path, {})
        if method in item:
            omitted.append({**source, "reason": f"same path and method as {item[method]['x-grpc-method']}"})
            continue
        tag = tags[binding.service_name]
        used_tags.add(binding.service_name)
        operation = _operation(binding, registry, tag, index, path_parameters, notes)
        if is_public is not None and is_public(binding.method):
            operation["security"] = []
        operation["responses"].update(_error_responses())
        if operation_extras is not None:
            extras = dict(operation_extras(binding.method))
            wrong = sorted(key for key in extras if not key.startswith("x-"))
            if wrong:
                raise ValueError(f"operation_extras must return x- extensions, got {wrong}")
            operation.update(extras)
        item[method] = operation
    info: dict[str, Any] = {"title": title, "version": version}
    info["description"] = "\n\n".join(p for p in (description.strip(), CONVENTIONS, _omitted_note(omitted)) if p)
    document: dict[str, Any] = {"openapi": "3.1.0", "info": info}
    if servers:
        document["servers"] = [{"url": s} if isinstance(s, str) else dict(s) for s in servers]
    document["tags"] = [
        {"name": tags[service.full_name], **_description(registry.comments.get(service.full_name))}
        for service in sorted(catalog.services, key=lambda s: tags[s.full_name])
        if service.full_name in used_tags
    ]
    document["paths"] = {
        path: {m: paths[path][m] for m in _PATH_ITEM_METHODS if m in paths[path]} for path in sorted(paths)
    }
    document["components"] = {
        "schemas": registry.components(),
        "responses": _error_components(),
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
        },
    }
    document["security"] = [{"bearerAuth": []}, {"apiKey": []}]
    if omitted:
        document["x-omitted-operations"] = omitted
    return copy.deepcopy(document)  # no object shared between two places of the document


def _tag_names(catalog: Catalog) -> dict[str, str]:
    # One tag per service, by short name unless two packages share it.
    short: dict[str, list[str]] = {}
    for service in catalog.services:
        short.setdefault(service.name, []).append(service.full_name)
    return {
        full: (name if len(fulls) == 1 else full.replace(".", "_")) for name, fulls in short.items() for full in fulls
    }


def _description(text: str) -> dict[str, str]:
    return {"description": text} if text else {}


def _omitted_note(omitted: list[dict[str, str]]) -> str:
    if not omitted:
        return ""
    lines = [f"- `{o['method']} {o['path']}` ({o['operation']}): {o['reason']}" for o in omitted]
    return "The edge also serves these bindings, which this document cannot describe:\n\n" + "\n".join(lines)


# --- paths -------------------------------------------------------------------------


def _chain(binding: Binding, field_path: str) -> list[descriptor.FieldDescriptor]:
    try:
        return resolve(binding.method.input_type, field_path)
    except FieldError:
        return []


def _singular(word: str) -> str:
    for suffix, replacement in (("ies", "y"), ("yses", "ysis"), ("lves", "lf"), ("sses", "ss"), ("xes", "x")):
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)] + replacement
    if word.endswith(("ss", "us", "is")) or not word.endswith("s") or len(word) < 3:
        return word
    return word[:-1]


def _camel(text: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    name = "".join(w if i == 0 else w[:1].upper() + w[1:] for i, w in enumerate(words))
    return name if name and not name[0].isdigit() else "p" + name


def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}{number}", number + 1
    used.add(candidate)
    return candidate


def _render_path(binding: Binding, registry: SchemaRegistry) -> tuple[str, list[Schema], list[str]]:
    """The OpenAPI path of a binding, its path parameters and notes for the description."""
    template = binding.template
    tokens = template.tokens
    by_start = {v.start: v for v in template.variables}
    used: set[str] = set()
    parts: list[str] = []
    parameters: list[Schema] = []
    notes: list[str] = []
    index = 0
    while index < len(tokens):
        variable = by_start.get(index)
        if variable is None:
            token = tokens[index]
            if token in ("*", "**"):
                name = _unique(_camel(_singular(tokens[index - 1])) if index else "segment", used)
                parts.append("{" + name + "}")
                parameters.append(_path_parameter(name, {"type": "string"}, "Any segment; the edge does not read it."))
            else:
                parts.append(token)
            index += 1
            continue
        chain = _chain(binding, variable.field_path)
        json_path = ".".join(f.json_name for f in chain) if chain else variable.field_path
        comment = registry.field_description(chain[-1]) if chain else ""
        span = tokens[variable.start : variable.end]
        if len(span) == 1 and span[0] in ("*", "**"):
            name = _unique(json_path, used)
            parts.append("{" + name + "}")
            leaf = chain[-1] if chain else None
            schema = registry.value(leaf) if leaf is not None and not is_map(leaf) else {"type": "string"}
            text = comment
            if span[0] == "**":
                text = _join(text, "May contain slashes (`a/b/c`); send them unencoded, as `%2F` stays encoded.")
            parameters.append(_path_parameter(name, schema, text))
        else:
            pattern: list[str] = []
            names: list[str] = []
            for offset, token in enumerate(span):
                if token not in ("*", "**"):
                    pattern.append(token)
                    continue
                base = _singular(span[offset - 1]) if offset else json_path
                name = _unique(_camel(base), used)
                names.append(name)
                pattern.append("{" + name + "}")
            parts.extend(pattern)
            joined = "/".join(pattern)
            for name, token in zip(names, (t for t in span if t in ("*", "**")), strict=True):
                what = "One segment" if token == "*" else "The last segments, with slashes between them (unencoded),"
                text = _join(f"{what} of `{json_path}`: the edge sets `{json_path}` to `{joined}`.", comment)
                parameters.append(_path_parameter(name, {"type": "string"}, text))
            if not names:
                notes.append(f"The path sets `{json_path}` to `{joined}`.")
        index = variable.end
    path = "/" + "/".join(parts) + (":" + template.verb if template.verb else "")
    return path, parameters, notes


def _rename(existing: str, path: str, parameters: list[Schema]) -> tuple[str, list[Schema]]:
    # OpenAPI treats paths that differ only in parameter names as one: reuse the first names.
    placeholder = re.compile(r"\{([^}]*)\}")
    mapping: dict[str, str] = dict(zip(placeholder.findall(path), placeholder.findall(existing), strict=True))

    def rename(match: re.Match[str]) -> str:
        return "{" + mapping.get(match.group(1), match.group(1)) + "}"

    renamed: list[Schema] = []
    for parameter in parameters:
        changed = {**parameter, "name": mapping.get(parameter["name"], parameter["name"])}
        if "description" in changed:
            changed["description"] = placeholder.sub(rename, changed["description"])
        renamed.append(changed)
    return existing, renamed


def _join(*texts: str) -> str:
    return "\n\n".join(t for t in texts if t)


def _path_parameter(name: str, schema: Schema, description: str) -> Schema:
    parameter: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


# --- operations --------------------------------------------------------------------


def _operation(
    binding: Binding,
    registry: SchemaRegistry,
    tag: str,
    index: int,
    path_parameters: list[Schema],
    notes: list[str],
) -> dict[str, Any]:
    method = binding.method
    comment = registry.comments.get(method.full_name)
    operation: dict[str, Any] = {"tags": [tag], "operationId": f"{tag}_{method.name}" + (f"_{index}" if index else "")}
    summary = summary_of(comment) or method.name
    operation["summary"] = summary
    extra = []
    if index:
        extra.append(f"Another binding of `{binding.grpc_path}`.")
    description = _join(comment if comment != summary else "", *notes, *extra)
    if description:
        operation["description"] = description
    bound = [
        ".".join(f.name for f in _chain(binding, v.field_path)) or v.field_path for v in binding.template.variables
    ]
    parameters = path_parameters + _query_parameters(binding, registry, bound)
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(binding, registry, bound)
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = {"200": _success(binding, registry)}
    if method.GetOptions().deprecated:
        operation["deprecated"] = True
    operation["x-grpc-method"] = binding.grpc_path
    return operation


def _query_parameters(binding: Binding, registry: SchemaRegistry, bound: list[str]) -> list[Schema]:
    if binding.body == "*":
        return []
    parameters: list[Schema] = []

    def walk(message: descriptor.Descriptor, prefix: list[descriptor.FieldDescriptor], seen: set[str]) -> None:
        for field in message.fields:
            chain = [*prefix, field]
            proto_path = ".".join(f.name for f in chain)
            if (not prefix and field.name == binding.body) or is_map(field):
                continue
            if any(proto_path == v or proto_path.startswith(v + ".") for v in bound):
                continue
            if field.type == FD.TYPE_MESSAGE and field.message_type is not None:
                name = field.message_type.full_name
                if name not in TEXT_WKT:
                    nested = not field.is_repeated and not name.startswith("google.protobuf.") and name not in seen
                    if nested and len(chain) < _MAX_QUERY_DEPTH:
                        walk(field.message_type, chain, seen | {name})
                    continue
            json_path = ".".join(f.json_name for f in chain)
            if json_path in IGNORED_QUERY_PARAMETERS:
                continue  # the edge drops these names before reading the query
            parameter: Schema = {"name": json_path, "in": "query", "schema": registry.field(field, annotate=False)}
            description = registry.field_description(field)
            if description:
                parameter["description"] = description
            if len(chain) == 1 and REQUIRED in behaviors(field):
                parameter["required"] = True
            if field.is_repeated:
                parameter["style"] = "form"
                parameter["explode"] = True
            if any(f.GetOptions().deprecated for f in chain):
                parameter["deprecated"] = True
            parameters.append(parameter)

    request = binding.method.input_type
    walk(request, [], {request.full_name})
    return parameters


def _binary(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"*/*": {"schema": dict(_BINARY)}}}


def _request_body(binding: Binding, registry: SchemaRegistry, bound: list[str]) -> dict[str, Any] | None:
    if not binding.body:
        return None
    request = binding.method.input_type
    if binding.body == "*":
        if request.full_name == HTTP_BODY:
            return _binary("The raw request body; its Content-Type is passed on.")
        schema = registry.without(request, bound)
        description = summary_of(registry.comments.get(request.full_name)) or f"A `{request.full_name}`."
    else:
        field = request.fields_by_name[binding.body]
        target = field.message_type
        if target is not None and target.full_name == HTTP_BODY and not field.is_repeated:
            return _binary(f"The raw `{field.json_name}` body; its Content-Type is passed on.")
        if target is not None and not field.is_repeated:
            inner = [p.split(".", 1)[1] for p in bound if p.startswith(field.name + ".")]
            schema = registry.without(target, inner)
        else:
            schema = registry.field(field, annotate=False)
        description = (
            registry.field_description(field)
            or (summary_of(registry.comments.get(target.full_name)) if target is not None else "")
            or f"The `{field.json_name}` field of the request."
        )
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _success(binding: Binding, registry: SchemaRegistry) -> dict[str, Any]:
    response = binding.method.output_type
    schema: Schema | None
    if binding.response_body:
        field = response.fields_by_name[binding.response_body]
        is_raw = field.message_type is not None and field.message_type.full_name == HTTP_BODY and not field.is_repeated
        schema = None if is_raw else registry.field(field, annotate=False)
        description = registry.field_description(field) or f"The `{field.json_name}` field of the response."
    else:
        schema = None if response.full_name == HTTP_BODY else registry.message(response)
        description = summary_of(registry.comments.get(response.full_name)) or f"A `{response.full_name}`."
    if not binding.server_streaming:
        if schema is None:
            return _binary("The raw response body, with the Content-Type the method chose.")
        return {"description": description, "content": {"application/json": {"schema": schema}}}
    if schema is None:
        return _binary("The data of the streamed messages, concatenated; Content-Type from the first message.")
    line: Schema = {
        "type": "object",
        "description": "One JSON object per line: `result` carries a message; if the stream fails after it "
        "started, a last line carries `error`.",
        "properties": {"result": schema, "error": ref(STATUS)},
        "minProperties": 1,
        "maxProperties": 1,
    }
    events: Schema = {
        "type": "string",
        "description": "Server-sent events (sent when the request accepts `text/event-stream`): each message is "
        "an event whose `data:` line is the message JSON; a failure is an `event: error` whose data is a "
        "`google.rpc.Status`.",
    }
    return {
        "description": f"A stream of messages. {description}",
        "content": {"application/x-ndjson": {"schema": line}, "text/event-stream": {"schema": events}},
    }


_ERROR_HEADERS = {
    "Unauthenticated": {
        "WWW-Authenticate": {"description": "The scheme to authenticate with.", "schema": {"type": "string"}}
    },
    "Unavailable": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
}


def _error_components() -> dict[str, Any]:
    content = {"application/json": {"schema": ref(STATUS)}}
    components: dict[str, Any] = {}
    for _, name, text in _ERRORS:
        components[name] = {"description": text, "content": content}
        if name in _ERROR_HEADERS:
            components[name]["headers"] = _ERROR_HEADERS[name]
    components["Error"] = {"description": _ERROR_MAPPING, "content": content}
    return components


def _error_responses() -> dict[str, Any]:
    responses = {code: {"$ref": f"#/components/responses/{name}"} for code, name, _ in _ERRORS}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    return responses
