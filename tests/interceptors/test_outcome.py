"""One code for a call's end: the client, the metrics, the RPC log line and the server span agree, edges included.

A real server on port 0 with the three outermost wrappers as ``runtime.server`` composes them (span →
metrics → log line) and no errors wrapper, so a handler's own exception, ``set_code`` and cancellation
reach them as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from interceptors.chain import chained_server
from interceptors.metrics import ServerMetrics
from interceptors.outcome import final_code
from interceptors.rpc_log import rpc_logged
from interceptors.tracing import traced
from tests.support.grpc_helpers import serving
from tests.support.tracing import recorded_spans

SERVICE = "t.Outcome"


async def _set_code_then_raise(request: bytes, context: Any) -> bytes:
    context.set_code(grpc.StatusCode.NOT_FOUND)
    context.set_details("no such thing")
    raise ValueError("not an abort")


async def _set_code_and_return(request: bytes, context: Any) -> bytes:
    context.set_code(grpc.StatusCode.ALREADY_EXISTS)
    return b""


async def _abort(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
    return b""  # pragma: no cover - abort raises


async def _crash(request: bytes, context: Any) -> bytes:
    raise RuntimeError("a bug")


async def _slow(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(30)
    return b""


async def _ok(request: bytes, context: Any) -> bytes:
    return request


HANDLERS = {
    "SetCodeThenRaise": _set_code_then_raise,
    "SetCodeAndReturn": _set_code_and_return,
    "Abort": _abort,
    "Crash": _crash,
    "Slow": _slow,
    "Ok": _ok,
}


@pytest.fixture
def rpc_lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="vocelio.rpc")
    return caplog


@pytest.fixture
async def outcome() -> AsyncIterator[tuple[grpc.aio.Channel, CollectorRegistry, InMemorySpanExporter]]:
    registry = CollectorRegistry()
    with recorded_spans() as spans:
        server = chained_server([traced, ServerMetrics(registry).measured, rpc_logged])
        handlers = {name: grpc.unary_unary_rpc_method_handler(handler) for name, handler in HANDLERS.items()}
        server.add_registered_method_handlers(SERVICE, handlers)
        async with serving(server) as channel:
            yield channel, registry, spans


async def _recorded(
    registry: CollectorRegistry, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture, method: str
) -> tuple[str, str, str]:
    """The code the metrics, the log line and the span recorded for the one call of ``method``."""
    for _ in range(500):  # the server unwinds a moment after the client has its status: a bound of 5 s
        lines = [
            r for r in caplog.records if r.name == "vocelio.rpc" and getattr(r, "fields", {}).get("method") == method
        ]
        finished = [s for s in spans.get_finished_spans() if s.name == f"{SERVICE}/{method}"]
        if lines and finished:
            break
        await asyncio.sleep(0.01)
    [line] = lines
    [span] = finished
    handled = [
        sample.labels["grpc_code"]
        for family in registry.collect()
        if family.name == "grpc_server_handled"
        for sample in family.samples
        if sample.name == "grpc_server_handled_total" and sample.labels["grpc_method"] == method and sample.value
    ]
    [metric] = handled
    status = span.attributes["rpc.grpc.status_code"] if span.attributes else None
    logged: str = getattr(line, "fields", {})["code"]
    return metric, logged, grpc.StatusCode(_by_value(status)).name


def _by_value(value: Any) -> tuple[int, str]:
    found: tuple[int, str] = next(code.value for code in grpc.StatusCode if code.value[0] == value)
    return found


@pytest.mark.parametrize(
    ("method", "code"),
    [
        # grpc.aio sends the code set on the context for a non-abort exception; UNKNOWN only when none is set
        ("SetCodeThenRaise", grpc.StatusCode.NOT_FOUND),
        ("SetCodeAndReturn", grpc.StatusCode.ALREADY_EXISTS),
        ("Abort", grpc.StatusCode.PERMISSION_DENIED),
        ("Crash", grpc.StatusCode.UNKNOWN),
    ],
)
async def test_metrics_log_and_span_record_the_code_the_client_sees(outcome, rpc_lines, method, code) -> None:
    channel, registry, spans = outcome
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{SERVICE}/{method}")(b"x", timeout=5)
    assert raised.value.code() == code
    assert await _recorded(registry, spans, rpc_lines, method) == (code.name,) * 3


async def test_a_call_cancelled_by_its_deadline_is_deadline_exceeded_everywhere(outcome, rpc_lines) -> None:
    channel, registry, spans = outcome
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{SERVICE}/Slow")(b"x", timeout=0.2)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await _recorded(registry, spans, rpc_lines, "Slow") == ("DEADLINE_EXCEEDED",) * 3


async def test_a_call_the_client_cancels_is_cancelled_everywhere(outcome, rpc_lines) -> None:
    channel, registry, spans = outcome
    call = channel.unary_unary(f"/{SERVICE}/Slow")(b"x", timeout=30)
    await asyncio.sleep(0.2)  # let the handler start (no timing is asserted)
    call.cancel()
    assert await _recorded(registry, spans, rpc_lines, "Slow") == ("CANCELLED",) * 3


async def test_an_ok_call_is_ok_everywhere(outcome, rpc_lines) -> None:
    channel, registry, spans = outcome
    assert await channel.unary_unary(f"/{SERVICE}/Ok")(b"x", timeout=5) == b"x"
    assert await _recorded(registry, spans, rpc_lines, "Ok") == ("OK",) * 3


class _Context:
    def __init__(self, code: Any, remaining: float | None = None) -> None:
        self._code, self._remaining = code, remaining

    def code(self) -> Any:
        return self._code

    def time_remaining(self) -> float | None:
        return self._remaining


def test_final_code_reads_integer_codes_and_defaults() -> None:
    assert final_code(_Context(None)) is grpc.StatusCode.OK
    assert final_code(_Context(5)) is grpc.StatusCode.NOT_FOUND  # abort_with_status passes the integer through
    assert final_code(_Context(grpc.StatusCode.OK), RuntimeError()) is grpc.StatusCode.UNKNOWN
    assert final_code(_Context(None), RuntimeError()) is grpc.StatusCode.UNKNOWN
    assert final_code(_Context(None, remaining=None), asyncio.CancelledError()) is grpc.StatusCode.CANCELLED
    assert final_code(_Context(None, remaining=3.0), asyncio.CancelledError()) is grpc.StatusCode.CANCELLED
    assert final_code(_Context(None, remaining=-0.1), asyncio.CancelledError()) is grpc.StatusCode.DEADLINE_EXCEEDED
