"""The status code a call ended with, as its client sees it: one answer for metrics, the RPC log and the span.

The three outermost wrappers (``interceptors/metrics.py``, ``interceptors/rpc_log.py``,
``interceptors/tracing.py``) each record the code a call ends with. They used to work it out
in three functions that disagreed at the edges; :func:`final_code` is the one they share, and
it follows what ``grpc.aio`` sends:

- the behaviour returned: the code set on the context (``set_code``), else OK;
- it was cancelled (``asyncio.CancelledError``): DEADLINE_EXCEEDED once the call's deadline
  has passed (the server cancels the handler when it expires; the client has seen
  DEADLINE_EXCEEDED), else CANCELLED (the client went away);
- it raised anything else — an abort (``grpc.aio.AbortError``, the code already set) or an
  exception no wrapper turned into a status: the code set on the context when it is not OK,
  else UNKNOWN. ``grpc.aio`` sends the code set on the context for an exception too (it
  "allows users to raise other types of exception with specified status code"), and UNKNOWN
  only when none was set.

The context's code may be a ``grpc.StatusCode`` or its integer (``abort_with_status`` passes
the ``grpc.Status``'s code through); both are read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def set_code(context: Any, default: grpc.StatusCode = grpc.StatusCode.OK) -> grpc.StatusCode:
    """The code set on the context (by an abort or ``set_code``), else ``default``."""
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    return _CODES.get(int(code), default)


def final_code(context: Any, error: BaseException | None = None) -> grpc.StatusCode:
    """The status the call ends with, its behaviour having returned (``error`` ``None``) or raised ``error``."""
    if error is None:
        return set_code(context)
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    code = set_code(context, default=grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN if code is grpc.StatusCode.OK else code
