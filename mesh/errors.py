"""The one error tree of the product.

Domain code raises these; the errors interceptor turns them into gRPC statuses and the
REST edge turns statuses into HTTP statuses with one table. Each class carries its gRPC
code, so the mapping lives in exactly one place: the class.

An error may also carry a machine-readable reason from its service's ``ErrorReason`` enum
(``protos/vocelio/<service>/v1/<service>_errors.proto``), sent as a ``google.rpc.ErrorInfo``
detail: ``raise FailedPrecondition("…").with_reason(REASONS, ERROR_REASON_X)``, where
``REASONS = ErrorReasons(<service>_errors_pb2.ErrorReason)``. :func:`rich_status` builds the
status with every detail the error carries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.rpc import error_details_pb2, status_pb2

REASON_PREFIX = "ERROR_REASON_"
DOMAIN_SUFFIX = ".vocelio.com"


class ErrorReasons:
    """One service's ``ErrorReason`` enum, as ``google.rpc.ErrorInfo`` reasons.

    ``ErrorInfo.reason`` is the enum value's name without the ``ERROR_REASON_`` prefix
    (AIP-193 UPPER_SNAKE: ``INVALID_GRANT``) and ``ErrorInfo.domain`` is
    ``<service>.vocelio.com``, the service being the enum's package segment.

    Attributes:
        domain: the service's error domain (``identity.vocelio.com``).

    """

    def __init__(self, enum: EnumTypeWrapper) -> None:
        descriptor: Any = enum.DESCRIPTOR
        package = descriptor.full_name.rsplit(".", 1)[0]
        parts = package.split(".")
        if descriptor.name != "ErrorReason" or len(parts) != 3 or parts[0] != "vocelio":
            raise ValueError(f"{descriptor.full_name} is not a service's ErrorReason enum")
        self._enum = enum
        self.domain = parts[1] + DOMAIN_SUFFIX

    def reason(self, value: int) -> str:
        """The ErrorInfo reason of an enum value (``INVALID_GRANT``).

        Raises:
            ValueError: the value is ``ERROR_REASON_UNSPECIFIED`` or not in the enum.

        """
        if value == 0 or value not in self._enum.values():
            raise ValueError(f"{value!r} is not a declared reason of {self._enum.DESCRIPTOR.full_name}")
        return str(self._enum.Name(value)).removeprefix(REASON_PREFIX)

    def declared(self) -> frozenset[str]:
        """Every reason the enum declares, as sent (without the prefix)."""
        return frozenset(self.reason(value) for value in self._enum.values() if value != 0)

    def info(self, value: int, metadata: Mapping[str, str] | None = None) -> error_details_pb2.ErrorInfo:
        """The ``google.rpc.ErrorInfo`` of an enum value, with optional metadata (never secrets)."""
        return error_details_pb2.ErrorInfo(reason=self.reason(value), domain=self.domain, metadata=metadata or {})


class VocelioError(Exception):
    """Base of every error the product raises on purpose.

    Attributes:
        code: the gRPC status code the caller receives.
        message: a message safe to show to the caller (no secrets, no SQL, no traces).

    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    error_info: error_details_pb2.ErrorInfo | None = None
    retry_delay: float | None = None
    quota_failure: error_details_pb2.QuotaFailure | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def with_reason(self, reasons: ErrorReasons, value: int, metadata: Mapping[str, str] | None = None) -> Self:
        """Attach a declared reason (sent as ``google.rpc.ErrorInfo``); returns the error, to raise it.

        Raises:
            ValueError: the value is not a declared reason of that enum.

        """
        self.error_info = reasons.info(value, metadata)
        return self

    def with_retry_delay(self, seconds: float) -> Self:
        """Tell the caller when to retry (sent as ``google.rpc.RetryInfo``, and ``grpc-retry-pushback-ms``)."""
        self.retry_delay = max(0.0, seconds)
        return self

    def with_quota_violation(self, subject: str, description: str) -> Self:
        """Name the quota the caller used up (sent as ``google.rpc.QuotaFailure``; never a secret)."""
        violation = error_details_pb2.QuotaFailure.Violation(subject=subject, description=description)
        if self.quota_failure is None:
            self.quota_failure = error_details_pb2.QuotaFailure()
        self.quota_failure.violations.append(violation)
        return self


class InvalidArgument(VocelioError):
    """The request is malformed, whatever the state of the system."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, field_violations: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.field_violations = dict(field_violations or {})


class NotFound(VocelioError):
    """The resource does not exist, or the caller may not know that it does."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VocelioError):
    """A resource with that name or id exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(VocelioError):
    """The system is not in a state that allows the operation (an illegal transition)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(VocelioError):
    """A concurrency conflict (stale etag, expected version mismatch); retry from a read."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(VocelioError):
    """A value is past the valid range (reading past the end of a stream)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Unauthenticated(VocelioError):
    """No valid credential."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(VocelioError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(VocelioError):
    """A quota or rate limit is used up."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(VocelioError):
    """A dependency (the database, another service) cannot be reached right now; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(VocelioError):
    """The work did not finish within the caller's deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(VocelioError):
    """The operation exists in the contract but this release does not implement it."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(VocelioError):
    """An invariant broke. The caller sees a generic message; the details go to the log."""

    code = grpc.StatusCode.INTERNAL


def rich_status(error: VocelioError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an error, with its details.

    ``BadRequest`` for the field violations of an :class:`InvalidArgument`, then the
    ``ErrorInfo`` of a reason attached with :meth:`VocelioError.with_reason`, the
    ``RetryInfo`` of :meth:`VocelioError.with_retry_delay` and the ``QuotaFailure`` of
    :meth:`VocelioError.with_quota_violation`.
    """
    details: list[any_pb2.Any] = []
    violations = getattr(error, "field_violations", None)
    if violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in violations.items()
            ]
        )
        details.append(_packed(bad_request))
    if error.error_info is not None:
        details.append(_packed(error.error_info))
    if error.retry_delay is not None:
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=retry_duration(error.retry_delay))))
    if error.quota_failure is not None:
        details.append(_packed(error.quota_failure))
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


def retry_duration(seconds: float) -> duration_pb2.Duration:
    """A retry delay as a ``Duration``, rounded up to the millisecond (never shorter than the wait)."""
    millis = max(0, math.ceil(seconds * 1000))
    return duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


def _packed(detail: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed
