"""Server side: one structured log line per RPC.

Logger ``vocelio.rpc``; the message reads ``/pkg.Service/Method CODE 1.23 ms`` and the
record's fields (JSON keys, see ``mesh/logs.py``) are ``service``, ``method``, ``code``,
``duration_ms``, ``principal`` (the subject), ``organization``, ``client_address`` and
``peer``; ``trace_id``, ``span_id`` and ``request_id`` come with every record of the call.
Only names and ids are logged: never metadata, requests or responses, so no token,
API key or password can reach the log from here.

Level: INFO for OK and for answers about the request (the client's problem: invalid,
not found, refused, rate-limited, cancelled …); WARNING for UNAVAILABLE,
DEADLINE_EXCEEDED and UNIMPLEMENTED (the service could not serve it); ERROR for
UNKNOWN, INTERNAL and DATA_LOSS (a bug or a broken store) — the same split as
OpenTelemetry's server span status. Health checks and reflection get no line.

The wrapper goes outside the errors wrapper, so it sees the code every call ends with,
refused calls included (``interceptors.outcome.final_code``, the same code the metrics and
the span record); the authentication wrapper notes the principal and client
address for it (``mesh/call_facts.py``). ``VOCELIO_RPC_LOG=false`` leaves it out of the
chain.

On the loop the line costs a level check, the fields and one queue put: when only the
process's log pipeline listens (``mesh.logs.direct``), a ``mesh.logs.Line`` tuple is queued
instead of a ``LogRecord`` (no record, no handler walk, no id formatting) and the writer
thread builds the JSON; otherwise (a test's ``caplog``, another handler) a record as usual.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry import trace

from interceptors.auth import INFRASTRUCTURE
from interceptors.chain import Behaviour, WrapperInterceptor
from interceptors.outcome import final_code
from mesh import call_facts, logs, request_id
from mesh.call_facts import CallFacts

log = logging.getLogger("vocelio.rpc")

_WARNING_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED}
)
_ERROR_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS})
_MESSAGE = "%s %s %.2f ms"


def level_of(code: grpc.StatusCode) -> int:
    """The level of the line of a call that ended with ``code``."""
    if code in _ERROR_CODES:
        return logging.ERROR
    if code in _WARNING_CODES:
        return logging.WARNING
    return logging.INFO


def rpc_logged(path: str, behaviour: Behaviour) -> Behaviour:
    """The behaviour with one log line written when its call ends (infrastructure left alone)."""
    if path.startswith(INFRASTRUCTURE):
        return behaviour
    service, _, method = path.lstrip("/").partition("/")

    def write(context: grpc.aio.ServicerContext[Any, Any], facts: CallFacts, started: float, failure: Any) -> None:
        code = final_code(context, failure)
        level = level_of(code)
        if not log.isEnabledFor(level):
            return
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        principal = facts.principal
        fields = {
            "service": service,
            "method": method,
            "code": code.name,
            "duration_ms": duration_ms,
            "principal": principal.subject if principal is not None else "",
            "organization": principal.organization_id if principal is not None else "",
            "client_address": facts.client_address,
            "peer": str(context.peer() or ""),
        }
        args = (path, code.name, duration_ms)
        handler = logs.direct(log)
        if handler is not None:
            # the usual case: only the process's log pipeline listens; the writer thread formats the line
            span = trace.get_current_span().get_span_context()
            valid = span.is_valid
            handler.put_line(
                logs.Line(
                    time.time(),
                    level,
                    log.name,
                    _MESSAGE,
                    args,
                    fields,
                    span.trace_id if valid else 0,
                    span.span_id if valid else 0,
                    request_id.current(),
                )
            )
            return
        # makeRecord + handle: Logger.log would also walk the stack for a file and line nobody reads.
        record = log.makeRecord(log.name, level, __file__, 0, _MESSAGE, args, None)
        record.fields = fields
        log.handle(record)

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = time.perf_counter()
            failure: BaseException | None = None
            facts, token = call_facts.begin()
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as error:
                failure = error
                raise
            finally:
                call_facts.end(token)
                write(context, facts, started, failure)

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        failure: BaseException | None = None
        facts, token = call_facts.begin()
        try:
            return await behaviour(request, context)
        except BaseException as error:
            failure = error
            raise
        finally:
            call_facts.end(token)
            write(context, facts, started, failure)

    return call


class RpcLogInterceptor(WrapperInterceptor):
    """:func:`rpc_logged` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self) -> None:
        super().__init__(rpc_logged)
