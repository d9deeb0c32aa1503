"""One mapping of errors from calls to other mesh services onto ``mesh.errors``.

Outages (UNAVAILABLE, DEADLINE_EXCEEDED, and a failure on the other side: INTERNAL,
UNKNOWN, DATA_LOSS) become UNAVAILABLE "retry later" for our caller. An answer about the
caller's request (NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION …) keeps its code and the
other service's message, which is caller-safe by the same rules as ours. A request the
other service found malformed is our bug, not the caller's: INTERNAL. DEADLINE_EXCEEDED while
serving a call that has a deadline stays DEADLINE_EXCEEDED: the outgoing call had only what
was left of that deadline (``interceptors/client_deadline.py``), so it is the caller's deadline
that ran out, and the caller should hear so. ``overrides`` replaces
any of these per call::

    with translated("identity", "look up the user", {grpc.StatusCode.NOT_FOUND: NotFound("user not found")}):
        reply = await stub.GetUser(request, timeout=5)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

import grpc

from mesh.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    VocelioError,
)
from mesh.resilience.deadlines import CALLER_DEADLINE

log = logging.getLogger(__name__)

_OUTAGES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.CANCELLED,
    }
)
_PASSED_ON: Mapping[grpc.StatusCode, type[VocelioError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def domain_error(
    error: grpc.aio.AioRpcError,
    service: str,
    what: str,
    overrides: Mapping[grpc.StatusCode, VocelioError] | None = None,
) -> VocelioError:
    """The domain error for a failed call to ``service`` that tried to ``what`` ("verify the API key").

    Args:
        error: the client-side error.
        service: the service called (``identity``).
        what: what the call was for, as a verb phrase, for messages and logs.
        overrides: the error to raise for particular codes instead of the default mapping.

    """
    code = error.code()
    if overrides and code in overrides:
        return overrides[code]
    log.warning("%s: could not %s: %s %s", service, what, code.name, error.details())
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and CALLER_DEADLINE.get() is not None:
        return DeadlineExceeded(f"{service} could not {what} within the caller's deadline")
    if code in _OUTAGES:
        return Unavailable(f"{service} could not {what} right now; try again shortly")
    passed_on = _PASSED_ON.get(code)
    if passed_on is not None:
        return passed_on(error.details() or f"{service} refused to {what}")
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return Unimplemented(f"{service} cannot {what} in this release")
    return Internal(f"could not {what}")


@contextlib.contextmanager
def translated(
    service: str, what: str, overrides: Mapping[grpc.StatusCode, VocelioError] | None = None
) -> Iterator[None]:
    """Run a block of calls to ``service``, raising :func:`domain_error` for any that fails.

    Raises:
        VocelioError: the mapped error, chained to nothing (the remote trace stays in the log).

    """
    try:
        yield
    except grpc.aio.AioRpcError as error:
        raise domain_error(error, service, what, overrides) from None
