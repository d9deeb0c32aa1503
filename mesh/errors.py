"""The one error tree of the product.

Domain code raises these; the errors interceptor turns them into gRPC statuses and the
REST edge turns statuses into HTTP statuses with one table. Each class carries its gRPC
code, so the mapping lives in exactly one place: the class.
"""

from __future__ import annotations

import grpc


class VocelioError(Exception):
    """Base of every error the product raises on purpose.

    Attributes:
        code: the gRPC status code the caller receives.
        message: a message safe to show to the caller (no secrets, no SQL, no traces).

    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
