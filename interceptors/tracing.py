"""A server span per call, child of the caller's W3C ``traceparent``.

The outermost server wrapper, so its span covers every other concern and sees the status
the call really ends with: the code is read from the servicer context once the behaviour
has finished (``context.code()``), which is right however the call ended —
``context.abort``, ``abort_with_status`` with rich details (what ``interceptors/errors.py``
sends, and what opentelemetry-instrumentation-grpc's aio interceptor records as OK), a
``set_code`` or an escaping exception.

Names and attributes follow the OpenTelemetry RPC conventions that
opentelemetry-instrumentation-grpc emits (so client and server spans match): span name
``package.Service/Method``, ``rpc.system=grpc``, ``rpc.service``, ``rpc.method`` and the
integer ``rpc.grpc.status_code``. A server span is ERROR only for the codes that mean the
server failed (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
DATA_LOSS); a caller's mistake (NOT_FOUND, INVALID_ARGUMENT, …) leaves it UNSET with its
code recorded, and the caller's CLIENT span is ERROR.

Everything that depends only on the method (name, attributes, tracer) is fixed when the
method is composed; with tracing off (:func:`mesh.telemetry.tracing.active`) the wrapper
returns the behaviour unchanged and costs nothing. With head sampling (the default, see
``mesh.telemetry.tracing``) most calls get a non-recording span: it still carries the trace
id and the caller's decision on to the calls this one makes, but nothing more is done for it
(no status, no attributes), and the unary path attaches the span itself rather than through
``start_as_current_span``'s generator-based context manager. The code recorded is
``interceptors.outcome.final_code``'s, the one the metrics and the RPC log line record.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from interceptors.chain import Behaviour, WrapperInterceptor
from interceptors.outcome import final_code
from mesh.call_facts import invocation_metadata
from mesh.telemetry.tracing import active

_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_STATUS_CODE = "rpc.grpc.status_code"


class _MetadataGetter(Getter[Iterable[Any]]):
    """Reads ``traceparent``/``tracestate`` straight from invocation metadata (no dict built)."""

    def get(self, carrier: Iterable[Any], key: str) -> list[str] | None:
        values = [value for k, value in carrier if k == key and isinstance(value, str)]
        return values or None

    def keys(self, carrier: Iterable[Any]) -> list[str]:
        return [k for k, _value in carrier]


_GETTER = _MetadataGetter()
_ROOT = Context()  # what extracting from metadata without any propagation field gives (immutable)


def _parent(context: grpc.aio.ServicerContext[Any, Any], fields: frozenset[str]) -> Context:
    """The caller's trace context; the root at once when no entry is one the propagators read."""
    entries = invocation_metadata(context)
    for key, _ in entries:
        if key in fields:
            return extract(entries, getter=_GETTER)
    return _ROOT


def span_attributes(path: str) -> tuple[str, dict[str, str | int]]:
    """The span name and fixed attributes of a method path ``/package.Service/Method``."""
    name = path.lstrip("/")
    service, _, method = name.partition("/")
    return name, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def finish(span: Span, code: grpc.StatusCode | None, details: str | None) -> None:
    """Record a call's final code on its server span (``None`` means OK)."""
    code = code or grpc.StatusCode.OK
    span.set_attribute(_STATUS_CODE, code.value[0])
    if code in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))


def traced(method: str, behaviour: Behaviour) -> Behaviour:
    """The behaviour inside a server span (the outermost wrapper); unchanged when tracing is off."""
    if not active():
        return behaviour
    tracer = trace.get_tracer(__name__)
    name, attributes = span_attributes(method)
    fields = frozenset(get_global_textmap().fields)  # traceparent, tracestate, baggage by default

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            parent = _parent(context, fields)
            with tracer.start_as_current_span(
                name, parent, SpanKind.SERVER, attributes, record_exception=False, set_status_on_exception=False
            ) as span:
                try:
                    async for response in behaviour(request, context):
                        yield response
                except BaseException as error:
                    if span.is_recording():
                        finish(span, final_code(context, error), context.details())
                    raise
                if span.is_recording():
                    finish(span, final_code(context), context.details())

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        parent = _parent(context, fields)
        span = tracer.start_span(name, parent, SpanKind.SERVER, attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            response = await behaviour(request, context)
        except BaseException as error:
            if span.is_recording():
                finish(span, final_code(context, error), context.details())
            raise
        else:
            if span.is_recording():
                finish(span, final_code(context), context.details())
            return response
        finally:
            otel_context.detach(token)
            span.end()

    return call


class TracingInterceptor(WrapperInterceptor):
    """:func:`traced` as a per-call interceptor (the outermost), for servers built with interceptors."""

    def __init__(self) -> None:
        super().__init__(traced)
