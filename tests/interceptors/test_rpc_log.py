"""One log line per RPC, on a real server on port 0: fields, levels, ids, and what is never logged."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry.sdk.trace import TracerProvider

from interceptors.chain import Behaviour, chained_server
from interceptors.errors import with_errors
from interceptors.request_id import with_request_id
from interceptors.rpc_log import RpcLogInterceptor, level_of, rpc_logged
from mesh import errors, logs
from mesh.call_facts import note_caller
from mesh.principal import Principal, PrincipalKind
from tests.support.grpc_helpers import serving

TRACER = TracerProvider().get_tracer("tests.interceptors.test_rpc_log")
ADA = Principal("users/u_ada", PrincipalKind.USER, "org_a", "ADMIN", frozenset({"*"}), credential="the-token")
SECRET_METADATA = (("authorization", "Bearer the-token"), ("x-api-key", "vk_live_secret"), ("x-request-id", "req-1"))
trace_ids: list[str] = []


def traced(path: str, behaviour: Behaviour) -> Behaviour:
    """A server span around the call, as the tracing wrapper makes one."""

    async def call(request: Any, context: Any) -> Any:
        with TRACER.start_as_current_span(path) as span:
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
            return await behaviour(request, context)

    return call if path != "/t.Log/Stream" else behaviour


def authenticated_as_ada(path: str, behaviour: Behaviour) -> Behaviour:
    """What the authentication wrapper notes for the log line (``mesh/call_facts.py``)."""
    if path.endswith("/Anonymous"):
        return behaviour

    async def call(request: Any, context: Any) -> Any:
        note_caller(ADA, "203.0.113.9")
        return await behaviour(request, context)

    async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
        note_caller(ADA, "203.0.113.9")
        async for response in behaviour(request, context):
            yield response

    return stream if path.endswith("/Stream") else call


async def _ok(request: bytes, context: Any) -> bytes:
    return request


async def _not_found(request: bytes, context: Any) -> bytes:
    raise errors.NotFound("agent not found")


async def _unavailable(request: bytes, context: Any) -> bytes:
    raise errors.Unavailable("team_hub is down")


async def _bug(request: bytes, context: Any) -> bytes:
    raise RuntimeError("password=hunter2")


async def _stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"one"
    yield b"two"


HANDLERS = {
    "Ok": grpc.unary_unary_rpc_method_handler(_ok),
    "Anonymous": grpc.unary_unary_rpc_method_handler(_ok),
    "NotFound": grpc.unary_unary_rpc_method_handler(_not_found),
    "Unavailable": grpc.unary_unary_rpc_method_handler(_unavailable),
    "Bug": grpc.unary_unary_rpc_method_handler(_bug),
    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
}


@pytest.fixture
def rpc_lines(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="vocelio.rpc")
    stamp = logs.CallContext()  # on the logger: pytest's handlers change between phases
    logging.getLogger("vocelio.rpc").addFilter(stamp)
    trace_ids.clear()
    yield caplog
    logging.getLogger("vocelio.rpc").removeFilter(stamp)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = chained_server([traced, with_request_id, rpc_logged, authenticated_as_ada, with_errors])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Log", HANDLERS),))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    async with serving(server) as channel:
        yield channel


def _rpc(records: list[logging.LogRecord]) -> list[Any]:
    return [record for record in records if record.name == "vocelio.rpc"]


async def _written(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[Any]:
    """The RPC lines once ``count`` are there: an abort sends the status before the line is written."""
    for _ in range(500):  # a bound of 5 s, not a measurement
        if len(_rpc(caplog.records)) >= count:
            break
        await asyncio.sleep(0.01)
    return _rpc(caplog.records)


async def test_an_ok_call_gets_one_info_line_with_every_field(channel, rpc_lines: pytest.LogCaptureFixture) -> None:
    await channel.unary_unary("/t.Log/Ok")(b"x", metadata=SECRET_METADATA, timeout=5)
    [line] = await _written(rpc_lines)
    assert line.levelno == logging.INFO
    fields = dict(line.fields)
    assert fields.pop("duration_ms") >= 0
    assert fields.pop("peer").startswith("ipv4:127.0.0.1:")
    assert fields == {
        "service": "t.Log",
        "method": "Ok",
        "code": "OK",
        "principal": "users/u_ada",
        "organization": "org_a",
        "client_address": "203.0.113.9",
    }
    assert line.request_id == "req-1"
    assert line.trace_id == trace_ids[0]
    assert line.getMessage().startswith("/t.Log/Ok OK ")


@pytest.mark.parametrize(
    ("method", "code", "level"),
    [
        ("NotFound", grpc.StatusCode.NOT_FOUND, logging.INFO),
        ("Unavailable", grpc.StatusCode.UNAVAILABLE, logging.WARNING),
        ("Bug", grpc.StatusCode.INTERNAL, logging.ERROR),
    ],
)
async def test_errors_get_their_code_level_and_trace_id(
    channel, rpc_lines: pytest.LogCaptureFixture, method: str, code: grpc.StatusCode, level: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/t.Log/{method}")(b"x", metadata=SECRET_METADATA, timeout=5)
    assert raised.value.code() == code
    [line] = await _written(rpc_lines)
    assert (line.fields["code"], line.levelno) == (code.name, level)
    assert line.trace_id == trace_ids[0]


async def test_a_stream_gets_one_line_when_it_ends(channel, rpc_lines: pytest.LogCaptureFixture) -> None:
    replies = [reply async for reply in channel.unary_stream("/t.Log/Stream")(b"x", timeout=5)]
    assert replies == [b"one", b"two"]
    [line] = await _written(rpc_lines)
    assert (line.fields["method"], line.fields["code"], line.fields["principal"]) == ("Stream", "OK", "users/u_ada")


async def test_a_public_call_names_no_principal_and_health_gets_no_line(
    channel, rpc_lines: pytest.LogCaptureFixture
) -> None:
    await channel.unary_unary("/t.Log/Anonymous")(b"x", timeout=5)
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    [line] = await _written(rpc_lines)
    assert (line.fields["method"], line.fields["principal"], line.fields["organization"]) == ("Anonymous", "", "")
    assert not hasattr(line, "request_id")


async def test_no_credential_or_secret_reaches_a_line(channel, rpc_lines: pytest.LogCaptureFixture) -> None:
    await channel.unary_unary("/t.Log/Ok")(b"x", metadata=SECRET_METADATA, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await channel.unary_unary("/t.Log/Bug")(b"x", metadata=SECRET_METADATA, timeout=5)
    formatter = logs.JsonFormatter("test")
    lines = [formatter.format(record) for record in await _written(rpc_lines, 2)]
    assert len(lines) == 2
    for secret in ("the-token", "vk_live_secret", "hunter2"):
        assert not [line for line in lines if secret in line]


def test_levels_follow_the_server_error_codes() -> None:
    client_side = [c for c in grpc.StatusCode if c not in _SERVER_ERRORS]
    assert {level_of(code) for code in client_side} == {logging.INFO}
    assert [level_of(code) for code in _SERVER_ERRORS] == [logging.WARNING] * 3 + [logging.ERROR] * 3


_SERVER_ERRORS = [
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DATA_LOSS,
]


async def test_as_a_per_call_interceptor(rpc_lines: pytest.LogCaptureFixture) -> None:
    server = grpc.aio.server(interceptors=[RpcLogInterceptor()])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Log", HANDLERS),))
    async with serving(server) as channel:
        bug: Any = channel.unary_unary("/t.Log/Bug")  # type: ignore[call-arg]  # raw bytes, no serializers
        with pytest.raises(grpc.aio.AioRpcError):
            await bug(b"x", timeout=5)
    [line] = await _written(rpc_lines)
    assert line.fields["code"] == "UNKNOWN"  # no errors wrapper here: grpc answers UNKNOWN itself
    assert line.levelno == logging.ERROR


async def test_with_only_the_log_pipeline_listening_the_line_is_queued_as_a_tuple_and_written_as_json(
    channel,
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    pipeline = logs.configure("INFO", "agents", "json", stream=out)
    try:
        assert logs.direct(logging.getLogger("vocelio.rpc")) is pipeline.handler
        trace_ids.clear()
        await channel.unary_unary("/t.Log/Ok")(b"x", metadata=SECRET_METADATA, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary("/t.Log/NotFound")(b"x", metadata=SECRET_METADATA, timeout=5)
        await asyncio.sleep(0.05)  # the not-found line is written as the handler unwinds, after the status
    finally:
        assert pipeline.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    entries = [json.loads(line) for line in out.getvalue().splitlines() if '"vocelio.rpc"' in line]
    assert [(e["method"], e["code"], e["level"]) for e in entries] == [
        ("Ok", "OK", "INFO"),
        ("NotFound", "NOT_FOUND", "INFO"),
    ]
    first = entries[0]
    assert first["message"].startswith("/t.Log/Ok OK ")
    assert (first["principal"], first["organization"], first["client_address"]) == (
        "users/u_ada",
        "org_a",
        "203.0.113.9",
    )
    assert (first["request_id"], first["trace_id"]) == ("req-1", trace_ids[0])
    assert first["process"] == "agents" and first["duration_ms"] >= 0
