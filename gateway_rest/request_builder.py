"""Build the gRPC request message of a binding from the HTTP request.

Order, so that the path always wins: the body (per the rule's ``body``), then query
parameters for fields the path and body do not cover, then the path variables.

Query parameters naming no field are ignored (400 in strict mode); a known field that
cannot be set from the URL (a map, a field inside a repeated message) is always a 400.
A body that does not fit the message is a 400 whose ``BadRequest`` names the field as the
client wrote it, in words that do not depend on the language the edge is written in.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from typing import Any

import grpc
from google.protobuf import json_format

from gateway_rest.descriptors import Binding
from gateway_rest.errors import EdgeError, bad_request
from gateway_rest.fields import FieldError, UnknownField, resolve, set_path

HTTP_BODY = "google.api.HttpBody"
# JSON nested deeper than this is a 400 (protobuf's own parser stops at 100, Python's at
# the interpreter's recursion limit, which would be a 500).
MAX_JSON_DEPTH = 64
# Query parameters some clients always send; never an error, even in strict mode.
IGNORED_QUERY_PARAMETERS = frozenset({"access_token", "api_key", "key", "alt", "prettyPrint", "$fields", "_"})
# json_format's ParseError texts: "Failed to parse <field> field: " once per level, then the reason,
# which is sometimes a Python built-in's own message ("invalid literal for int() …").
_FAILED_FIELD = re.compile(r"Failed to parse (\S+) field: ")
_NO_SUCH_FIELD = re.compile(r'has no field named "([^"]+)"')
_AT_LOCATION = re.compile(r'\s+at "?[\w.\[\]]+"?$')
_PYTHON_TEXT = re.compile(r"\w\(\)|\bobject\b|bytes-like|unhashable|NoneType|\bnot '\w+'")


@dataclasses.dataclass(frozen=True, slots=True)
class RequestOptions:
    """How strictly requests are read.

    Attributes:
        strict: unknown JSON fields and unknown or redundant query parameters are a 400
            instead of being ignored.

    """

    strict: bool = False


def build_request(
    binding: Binding,
    variables: dict[str, str],
    query_string: str,
    body: bytes,
    content_type: str,
    options: RequestOptions,
) -> Any:
    """The request message, or an :class:`EdgeError` (400/415) explaining what is wrong."""
    message = binding.request_class()
    descriptor = message.DESCRIPTOR
    if binding.body:
        _apply_body(binding, message, body, content_type, options)
    elif body.strip():
        raise EdgeError(
            grpc.StatusCode.INVALID_ARGUMENT, f"{binding.http_method} {binding.template.source} takes no request body"
        )
    if query_string:
        _apply_query(binding, message, variables, query_string, options)
    for path, value in variables.items():
        try:
            set_path(message, resolve(descriptor, path), [value], path)
        except FieldError as error:
            raise bad_request(error.field, error.reason) from None
    return message


def _apply_body(binding: Binding, message: Any, body: bytes, content_type: str, options: RequestOptions) -> None:
    descriptor = message.DESCRIPTOR
    if binding.body == "*":
        target_descriptor = descriptor
        field = None
    else:
        field = descriptor.fields_by_name[binding.body]
        target_descriptor = field.message_type
    if target_descriptor is not None and target_descriptor.full_name == HTTP_BODY and not (field and field.is_repeated):
        target = message if field is None else getattr(message, field.name)
        target.content_type = content_type or "application/octet-stream"
        target.data = body
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise EdgeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unsupported content type {media!r}; send application/json",
            http=415,
        )
    if not body.strip():
        return  # an empty body is an empty message
    document = parse_json_body(body)
    ignore_unknown = not options.strict
    try:
        if field is None:
            if not isinstance(document, dict):
                raise EdgeError(grpc.StatusCode.INVALID_ARGUMENT, "request body must be a JSON object")
            json_format.ParseDict(document, message, ignore_unknown_fields=ignore_unknown)
        elif field.type == field.TYPE_MESSAGE and not field.is_repeated:
            if not isinstance(document, dict) and not _is_wkt_scalar(field.message_type.full_name):
                raise EdgeError(grpc.StatusCode.INVALID_ARGUMENT, f"request body must be a JSON object ({field.name})")
            staging = binding.request_class()
            json_format.ParseDict({field.json_name: document}, staging, ignore_unknown_fields=ignore_unknown)
            message.MergeFrom(staging)
        else:
            staging = binding.request_class()
            json_format.ParseDict({field.json_name: document}, staging, ignore_unknown_fields=ignore_unknown)
            message.MergeFrom(staging)
    except json_format.ParseError as error:
        raise _body_error(error) from None


def parse_json_body(body: bytes) -> Any:
    """The body parsed as JSON no deeper than :data:`MAX_JSON_DEPTH`, or a 400."""
    too_deep = EdgeError(
        grpc.StatusCode.INVALID_ARGUMENT, f"request body is JSON nested deeper than {MAX_JSON_DEPTH} levels"
    )
    # Fewer brackets than the limit cannot nest past it: most bodies skip the walk below.
    maybe_deep = body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
    try:
        document = json.loads(body)
    except RecursionError:
        raise too_deep from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgeError(grpc.StatusCode.INVALID_ARGUMENT, f"request body is not valid JSON: {error}") from None
    except ValueError:  # a number too long to convert; Python's own words name a Python setting
        raise EdgeError(
            grpc.StatusCode.INVALID_ARGUMENT, "request body is not valid JSON: a number is too long"
        ) from None
    if maybe_deep and _deeper_than(document, MAX_JSON_DEPTH):
        raise too_deep
    return document


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests arrays and objects more than ``limit`` deep (no recursion)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _body_error(error: json_format.ParseError) -> EdgeError:
    """A 400 naming the offending field, without the parser's Python-specific wording."""
    text = str(error)
    path: list[str] = []
    while match := _FAILED_FIELD.match(text):
        path.append(match.group(1))
        text = text[match.end() :]
    text = text.split("\n", 1)[0].strip().rstrip(".")
    unknown = _NO_SUCH_FIELD.search(text)
    if unknown:
        path.append(unknown.group(1))
        description = "no such field"
    elif _PYTHON_TEXT.search(text):
        description = "has a JSON value of the wrong type"
    else:
        description = _AT_LOCATION.sub("", text).rstrip(".")
    field = ".".join(path) or "(body)"
    return bad_request(field, description, f"request body does not fit the message: {field}: {description}")


def _is_wkt_scalar(full_name: str) -> bool:
    return full_name.startswith("google.protobuf.") and full_name.rsplit(".", 1)[1] in {
        "Timestamp",
        "Duration",
        "FieldMask",
        "Value",
        "ListValue",
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    }


def _apply_query(
    binding: Binding, message: Any, variables: dict[str, str], query_string: str, options: RequestOptions
) -> None:
    pairs = urllib.parse.parse_qsl(query_string, keep_blank_values=True)
    if binding.body == "*":
        if options.strict and any(name not in IGNORED_QUERY_PARAMETERS for name, _ in pairs):
            raise EdgeError(
                grpc.StatusCode.INVALID_ARGUMENT, "this method takes every field in the body; no query parameters"
            )
        return
    # Grouped by the field they name, so "displayName=a&display_name=b" is one field given twice.
    grouped: dict[str, tuple[str, list[Any], list[str]]] = {}
    descriptor = message.DESCRIPTOR
    for name, value in pairs:
        if name in IGNORED_QUERY_PARAMETERS:
            continue
        try:
            chain = resolve(descriptor, name)
        except UnknownField as error:
            if options.strict:
                raise bad_request(error.field, error.reason) from None
            continue
        except FieldError as error:
            raise bad_request(error.field, error.reason) from None
        canonical = ".".join(f.name for f in chain)
        grouped.setdefault(canonical, (name, chain, []))[2].append(value)
    for canonical, (name, chain, values) in grouped.items():
        if chain[0].name == binding.body or any(canonical == v or canonical.startswith(v + ".") for v in variables):
            if options.strict:
                raise bad_request(name, "is already set by the path or the body")
            continue
        try:
            set_path(message, chain, values, name)
        except FieldError as error:
            raise bad_request(error.field, error.reason) from None
