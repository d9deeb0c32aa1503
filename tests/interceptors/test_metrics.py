"""Server RED metrics: started, handled by the code the client saw, latency, in flight, stream messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from prometheus_client import CollectorRegistry

from interceptors.chain import chained_server
from interceptors.errors import with_errors
from interceptors.metrics import ServerMetrics, grpc_type, split_path
from mesh.errors import InvalidArgument, NotFound, Unauthenticated
from tests.support.grpc_helpers import serving

SERVICE = "test.Metered"


async def _ok(request: bytes, context: Any) -> bytes:
    return request


async def _missing(request: bytes, context: Any) -> bytes:
    raise NotFound("no such thing")


async def _invalid(request: bytes, context: Any) -> bytes:
    # with details: with_errors aborts with a rich status (abort_with_status)
    raise InvalidArgument("bad request", {"name": "must be set"})


async def _set_code(request: bytes, context: Any) -> bytes:
    context.set_code(grpc.StatusCode.ALREADY_EXISTS)
    return b""


async def _crash(request: bytes, context: Any) -> bytes:
    raise RuntimeError("a bug")


async def _slow(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(30)
    return b""


async def _three(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield request


def _refuse(path: str, behaviour: Any) -> Any:
    """Stands in for authentication: the handler of ``Guarded`` never runs."""
    if not path.endswith("/Guarded"):
        return behaviour

    async def call(request: bytes, context: Any) -> bytes:
        raise Unauthenticated("invalid or missing credentials")

    return call


@pytest.fixture
async def metered():
    registry = CollectorRegistry()
    metrics = ServerMetrics(registry)
    server = chained_server([metrics.measured, with_errors, _refuse])
    unary = {
        name: grpc.unary_unary_rpc_method_handler(handler)
        for name, handler in {
            "Ok": _ok,
            "Missing": _missing,
            "Invalid": _invalid,
            "SetCode": _set_code,
            "Crash": _crash,
            "Slow": _slow,
            "Guarded": _ok,
        }.items()
    }
    server.add_registered_method_handlers(SERVICE, {**unary, "Three": grpc.unary_stream_rpc_method_handler(_three)})
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    async with serving(server) as channel:
        yield channel, registry


async def _eventually(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


def _value(registry: CollectorRegistry, name: str, method: str, **labels: str) -> float:
    found = registry.get_sample_value(name, {"grpc_service": SERVICE, "grpc_method": method, **labels})
    return 0.0 if found is None else found


async def _fail(channel: Any, method: str, **kwargs: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{SERVICE}/{method}")(b"x", **kwargs)
    return raised.value.code()


async def test_a_successful_call_is_started_handled_ok_and_timed(metered):
    channel, registry = metered
    for _ in range(2):
        assert await channel.unary_unary(f"/{SERVICE}/Ok")(b"x", timeout=5) == b"x"
    labels = {"grpc_type": "unary"}
    assert _value(registry, "grpc_server_started_total", "Ok", **labels) == 2
    assert _value(registry, "grpc_server_handled_total", "Ok", grpc_code="OK", **labels) == 2
    assert _value(registry, "grpc_server_handling_seconds_count", "Ok", **labels) == 2
    assert _value(registry, "grpc_server_handling_seconds_bucket", "Ok", le="+Inf", **labels) == 2
    assert _value(registry, "grpc_server_in_flight", "Ok", **labels) == 0


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("Missing", grpc.StatusCode.NOT_FOUND),
        ("Invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("Guarded", grpc.StatusCode.UNAUTHENTICATED),
        ("Crash", grpc.StatusCode.INTERNAL),
        ("SetCode", grpc.StatusCode.ALREADY_EXISTS),
    ],
)
async def test_the_code_recorded_is_the_one_the_client_sees(metered, method, code):
    channel, registry = metered
    assert await _fail(channel, method, timeout=5) == code
    # An abort sends the status before the handler's task unwinds through the wrapper: allow it a tick.
    await _eventually(
        lambda: _value(registry, "grpc_server_handled_total", method, grpc_type="unary", grpc_code=code.name) == 1
    )
    assert _value(registry, "grpc_server_handled_total", method, grpc_type="unary", grpc_code="OK") == 0


async def test_a_call_past_its_deadline_is_deadline_exceeded(metered):
    channel, registry = metered
    assert await _fail(channel, "Slow", timeout=0.2) == grpc.StatusCode.DEADLINE_EXCEEDED
    labels = {"grpc_type": "unary", "grpc_code": "DEADLINE_EXCEEDED"}
    for _ in range(500):  # the server notices the deadline a moment after the client
        if _value(registry, "grpc_server_handled_total", "Slow", **labels) == 1:
            break
        await asyncio.sleep(0.01)
    assert _value(registry, "grpc_server_handled_total", "Slow", **labels) == 1
    assert _value(registry, "grpc_server_in_flight", "Slow", grpc_type="unary") == 0


async def test_a_call_the_client_cancels_is_cancelled_and_in_flight_while_it_runs(metered):
    channel, registry = metered
    call = channel.unary_unary(f"/{SERVICE}/Slow")(b"x", timeout=30)
    for _ in range(500):
        if _value(registry, "grpc_server_in_flight", "Slow", grpc_type="unary") == 1:
            break
        await asyncio.sleep(0.01)
    assert _value(registry, "grpc_server_in_flight", "Slow", grpc_type="unary") == 1
    call.cancel()
    labels = {"grpc_type": "unary", "grpc_code": "CANCELLED"}
    for _ in range(500):
        if _value(registry, "grpc_server_handled_total", "Slow", **labels) == 1:
            break
        await asyncio.sleep(0.01)
    assert _value(registry, "grpc_server_handled_total", "Slow", **labels) == 1
    assert _value(registry, "grpc_server_in_flight", "Slow", grpc_type="unary") == 0


async def test_streams_count_messages_sent(metered):
    channel, registry = metered
    replies = [reply async for reply in channel.unary_stream(f"/{SERVICE}/Three")(b"x", timeout=5)]
    assert replies == [b"x"] * 3
    labels = {"grpc_type": "server_stream"}
    assert _value(registry, "grpc_server_msg_sent_total", "Three", **labels) == 3
    assert _value(registry, "grpc_server_handled_total", "Three", grpc_code="OK", **labels) == 1


async def test_the_call_type_comes_from_the_method_descriptor(metered):
    channel, registry = metered
    stub = health_pb2_grpc.HealthStub(channel)
    await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    labels = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check", "grpc_type": "unary", "grpc_code": "OK"}
    assert registry.get_sample_value("grpc_server_handled_total", labels) == 1
    assert grpc_type("/grpc.health.v1.Health/Watch", _ok) == "server_stream"
    assert grpc_type("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", _three) == "bidi_stream"
    assert grpc_type("/unknown.Service/Method", _three) == "server_stream"


def test_paths_split_into_service_and_method():
    assert split_path("/vocelio.agents.v1.AgentsService/GetAgent") == ("vocelio.agents.v1.AgentsService", "GetAgent")


async def test_durations_fall_in_cumulative_buckets_whose_bound_includes_them(monkeypatch):
    """A duration equal to a bound counts in that bucket (``le``), and every bucket above it counts it too."""
    durations = iter([0.0, 0.005, 10.0, 10.02, 100.0, 160.0])  # (start, end) pairs: 5 ms, 20 ms, 60 s
    monkeypatch.setattr("interceptors.metrics.time.perf_counter", lambda: next(durations))
    registry = CollectorRegistry()
    metrics = ServerMetrics(registry)
    measured = metrics.measured(f"/{SERVICE}/Ok", _ok)

    class Context:
        def code(self) -> None:
            return None

    for _ in range(3):
        assert await measured(b"x", Context()) == b"x"
    labels = {"grpc_type": "unary"}

    def bucket(le: str) -> float:
        return _value(registry, "grpc_server_handling_seconds_bucket", "Ok", le=le, **labels)

    assert [bucket(le) for le in ("0.001", "0.005", "0.01", "0.025", "30.0", "+Inf")] == [0, 1, 1, 2, 2, 3]
    assert _value(registry, "grpc_server_handling_seconds_count", "Ok", **labels) == 3
    assert _value(registry, "grpc_server_handling_seconds_sum", "Ok", **labels) == pytest.approx(60.025)
    assert registry.get_sample_value(
        "grpc_server_handling_seconds_created", {"grpc_service": SERVICE, "grpc_method": "Ok", **labels}
    )
