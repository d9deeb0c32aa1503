"""Build the gRPC request message of a binding from the HTTP request.

Order, so that the path always wins: the body (per the rule's ``body``), then query
parameters for fields the path and body do not cover, then the path variables.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from typing import Any

import grpc
from google.protobuf import json_format

from gateway_rest.descriptors import Binding
from gateway_rest.errors import EdgeError, bad_request
from gateway_rest.fields import FieldError, resolve, set_path

HTTP_BODY = "google.api.HttpBody"
# Query parameters some clients always send; never an error, even in strict mode.
IGNORED_QUERY_PARAMETERS = frozenset({"access_token", "api_key", "key", "alt", "prettyPrint", "$fields", "_"})


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
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise EdgeError(grpc.StatusCode.INVALID_ARGUMENT, f"request body is not valid JSON: {error}") from None
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
        raise EdgeError(grpc.StatusCode.INVALID_ARGUMENT, f"request body does not fit the message: {error}") from None


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
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    descriptor = message.DESCRIPTOR
    for name, values in grouped.items():
        if name in IGNORED_QUERY_PARAMETERS:
            continue
        try:
            chain = resolve(descriptor, name)
        except FieldError as error:
            if options.strict:
                raise bad_request(error.field, error.reason) from None
            continue
        top = chain[0].name
        canonical = ".".join(f.name for f in chain)
        if top == binding.body or any(canonical == v or canonical.startswith(v + ".") for v in variables):
            if options.strict:
                raise bad_request(name, "is already set by the path or the body")
            continue
        try:
            set_path(message, chain, values, name)
        except FieldError as error:
            raise bad_request(error.field, error.reason) from None
