"""The tracing wrapper on a real server on port 0: parents, names, attributes and statuses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from interceptors.chain import chained_server
from interceptors.errors import ErrorsInterceptor, with_errors
from interceptors.tracing import TracingInterceptor, traced
from mesh import errors
from tests.support.tracing import recorded_spans
from vocelio.identity.v1 import identity_errors_pb2

REASONS = errors.ErrorReasons(identity_errors_pb2.ErrorReason)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def _echo(request, context):
    return request


async def _precondition_with_reason(request, context):
    raise errors.FailedPrecondition("account locked").with_reason(
        REASONS, identity_errors_pb2.ERROR_REASON_RATE_LIMITED
    )


async def _unavailable_with_reason(request, context):
    raise errors.Unavailable("key store unreachable").with_reason(
        REASONS, identity_errors_pb2.ERROR_REASON_RATE_LIMITED
    )


async def _bug(request, context):
    raise RuntimeError("password=hunter2")


async def _set_code(request, context):
    context.set_code(grpc.StatusCode.ALREADY_EXISTS)
    return b""


async def _stream(request, context):
    yield b"one"
    raise errors.Internal("stream broke")


HANDLERS = {
    "Echo": grpc.unary_unary_rpc_method_handler(_echo),
    "Precondition": grpc.unary_unary_rpc_method_handler(_precondition_with_reason),
    "Unavailable": grpc.unary_unary_rpc_method_handler(_unavailable_with_reason),
    "Bug": grpc.unary_unary_rpc_method_handler(_bug),
    "SetCode": grpc.unary_unary_rpc_method_handler(_set_code),
    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exporter:
        yield exporter


@pytest.fixture(params=["chained", "interceptor"])
async def channel(request, spans):
    server: grpc.aio.Server
    if request.param == "chained":
        server = chained_server([traced, with_errors])
    else:
        server = grpc.aio.server(interceptors=[TracingInterceptor(), ErrorsInterceptor()])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Traced", HANDLERS),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def _only_span(spans: InMemorySpanExporter) -> ReadableSpan:
    for _ in range(500):  # the span ends as the handler returns; the reply may arrive first
        finished = spans.get_finished_spans()
        if finished:
            assert len(finished) == 1
            return finished[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no span was recorded")


async def _unary(channel, method: str, metadata=()) -> grpc.StatusCode:
    try:
        await channel.unary_unary(f"/test.Traced/{method}")(b"x", timeout=5, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_call_is_a_server_span_continuing_the_callers_traceparent(channel, spans):
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    assert await _unary(channel, "Echo", (("traceparent", traceparent),)) == grpc.StatusCode.OK
    span = await _only_span(spans)
    assert span.name == "test.Traced/Echo"
    assert span.kind == SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert dict(span.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "test.Traced",
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
    }
    assert span.status.status_code == StatusCode.UNSET


async def test_without_traceparent_a_call_starts_a_trace(channel, spans):
    assert await _unary(channel, "Echo") == grpc.StatusCode.OK
    span = await _only_span(spans)
    assert span.parent is None


async def test_a_server_error_with_details_is_an_error_span_with_its_code(channel, spans):
    # errors.py sends it with abort_with_status (ErrorInfo), which instrumentation-grpc would record as OK
    assert await _unary(channel, "Unavailable") == grpc.StatusCode.UNAVAILABLE
    span = await _only_span(spans)
    assert (
        span.attributes is not None and span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    )
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "UNAVAILABLE: key store unreachable"


async def test_a_callers_mistake_with_details_records_its_code_and_leaves_the_span_unset(channel, spans):
    assert await _unary(channel, "Precondition") == grpc.StatusCode.FAILED_PRECONDITION
    span = await _only_span(spans)
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert span.status.status_code == StatusCode.UNSET  # OTel RPC conventions: not the server's fault


async def test_a_bug_is_internal_and_its_message_stays_out_of_the_span(channel, spans):
    assert await _unary(channel, "Bug") == grpc.StatusCode.INTERNAL
    span = await _only_span(spans)
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 13
    assert span.status.status_code == StatusCode.ERROR
    assert (span.status.description or "").startswith("INTERNAL: internal error (incident ")
    assert "hunter2" not in (span.status.description or "")
    assert not span.events


async def test_a_code_set_without_raising_is_recorded(channel, spans):
    assert await _unary(channel, "SetCode") == grpc.StatusCode.ALREADY_EXISTS
    span = await _only_span(spans)
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 6


async def test_a_stream_that_fails_after_a_reply_is_an_error_span(channel, spans):
    call = channel.unary_stream("/test.Traced/Stream")(b"x", timeout=5)
    received = []

    async def read_all() -> None:
        async for reply in call:
            received.append(reply)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all()
    assert received == [b"one"]
    span = await _only_span(spans)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 13
    assert span.status.status_code == StatusCode.ERROR


def test_with_tracing_off_the_behaviour_is_unchanged():
    assert traced("/test.Traced/Echo", _echo) is _echo
