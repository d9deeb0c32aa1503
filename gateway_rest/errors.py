"""gRPC status → HTTP status, and every error body as ``google.rpc.Status`` JSON.

The table is google/rpc/code.proto's "HTTP Mapping" (the same in grpc-gateway, Envoy and
Connect). Errors the edge raises itself (no route, bad JSON, body too large …) use the
same body, so a client parses one error shape whatever went wrong and wherever.
"""

from __future__ import annotations

import json
import math
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # code.proto allows 412 when the request carried ETag preconditions; like grpc-gateway we keep 400.
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC code (500 for anything unknown)."""
    return HTTP_STATUS.get(code, 500)


def code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC code with this number (UNKNOWN for numbers outside the canonical set)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


class EdgeError(Exception):
    """An error the edge answers itself, before or instead of calling upstream.

    Attributes:
        code: gRPC code in the body.
        message: message safe for the client.
        http: HTTP status (defaults to the table's).
        details: ``google.rpc`` detail messages.
        headers: extra response headers (``Allow``, ``Retry-After`` …).

    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        http: int | None = None,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http = http if http is not None else http_status(code)
        self.details = details or []
        self.headers = headers or {}

    def status(self) -> status_pb2.Status:
        """The error as a ``google.rpc.Status``."""
        packed = []
        for detail in self.details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


def bad_request(field: str, description: str, message: str | None = None) -> EdgeError:
    """INVALID_ARGUMENT / 400 with a ``BadRequest`` field violation."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    return EdgeError(
        grpc.StatusCode.INVALID_ARGUMENT,
        message or f"invalid value for {field}: {description}",
        details=[error_details_pb2.BadRequest(field_violations=[violation])],
    )


def status_json(status: status_pb2.Status) -> bytes:
    """``google.rpc.Status`` as ProtoJSON bytes; ``details`` is always present."""
    try:
        details = json_format.MessageToDict(status).get("details", [])
    except (json_format.Error, TypeError, KeyError):
        # A detail of a type this edge does not know: keep code and message, drop details.
        details = []
    body = {"code": status.code, "message": status.message, "details": details}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def status_from_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status of a failed call: ``grpc-status-details-bin`` if present."""
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            if status.code == error.code().value[0]:
                return status
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


def retry_after_seconds(status: status_pb2.Status) -> int | None:
    """The status's ``google.rpc.RetryInfo`` as ``Retry-After`` seconds (rounded up, at least 1), or ``None``.

    One rule for every endpoint of the edge: the transcoder's 429 and 503, and the OAuth
    endpoints' ``slow_down`` and ``temporarily_unavailable``.
    """
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            seconds: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return max(1, math.ceil(seconds))
    return None
