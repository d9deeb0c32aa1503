"""The errors wrapper on a real server on port 0: composed per method, and as a per-call interceptor."""

from __future__ import annotations

import logging

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import OperationalError, ProgrammingError

from interceptors.chain import chained_server
from interceptors.errors import ErrorsInterceptor, with_errors
from mesh import errors
from vocelio.identity.v1 import identity_errors_pb2

REASONS = errors.ErrorReasons(identity_errors_pb2.ErrorReason)

SECRET = "password=hunter2 SELECT * FROM users"


async def _raise_domain(request, context):
    raise errors.FailedPrecondition("campaign is not running")


async def _raise_invalid(request, context):
    raise errors.InvalidArgument("bad agent", {"agent.display_name": "must not be empty"})


async def _raise_bug(request, context):
    raise RuntimeError(SECRET)


async def _raise_with_reason(request, context):
    raise errors.ResourceExhausted("slow down").with_reason(
        REASONS, identity_errors_pb2.ERROR_REASON_RATE_LIMITED, {"limit": "per_address"}
    )


async def _raise_invalid_with_reason(request, context):
    raise errors.InvalidArgument("bad grant", {"grant_type": "is not supported"}).with_reason(
        REASONS, identity_errors_pb2.ERROR_REASON_UNSUPPORTED_GRANT_TYPE
    )


async def _database_gone(request, context):
    raise OperationalError(SECRET, {"password": "hunter2"}, Exception("server closed the connection unexpectedly"))


async def _database_bug(request, context):
    raise ProgrammingError(SECRET, {}, Exception("syntax error"))


async def _abort_directly(request, context):
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")


async def _echo(request, context):
    return request


async def _stream_then_fail(request, context):
    yield b"first"
    raise errors.Aborted("stream version conflict")


async def _stream_bug(request, context):
    yield b"first"
    raise KeyError(SECRET)


HANDLERS = {
    "Domain": grpc.unary_unary_rpc_method_handler(_raise_domain),
    "Invalid": grpc.unary_unary_rpc_method_handler(_raise_invalid),
    "Bug": grpc.unary_unary_rpc_method_handler(_raise_bug),
    "Reason": grpc.unary_unary_rpc_method_handler(_raise_with_reason),
    "InvalidReason": grpc.unary_unary_rpc_method_handler(_raise_invalid_with_reason),
    "Abort": grpc.unary_unary_rpc_method_handler(_abort_directly),
    "DatabaseGone": grpc.unary_unary_rpc_method_handler(_database_gone),
    "DatabaseBug": grpc.unary_unary_rpc_method_handler(_database_bug),
    "Echo": grpc.unary_unary_rpc_method_handler(_echo),
    "StreamFail": grpc.unary_stream_rpc_method_handler(_stream_then_fail),
    "StreamBug": grpc.unary_stream_rpc_method_handler(_stream_bug),
}


@pytest.fixture(params=["chained", "interceptor"])
async def channel(request):
    server: grpc.aio.Server
    if request.param == "chained":
        server = chained_server([with_errors])
    else:
        server = grpc.aio.server(interceptors=[ErrorsInterceptor()])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Errors", HANDLERS),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


async def _call(channel, method: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(f"/test.Errors/{method}")(b"x", timeout=5)
    return caught.value


async def test_domain_errors_keep_their_code_and_message(channel):
    error = await _call(channel, "Domain")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "campaign is not running"


async def test_field_violations_travel_as_bad_request_details(channel):
    error = await _call(channel, "Invalid")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # AioRpcError is a Call
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert [(v.field, v.description) for v in detail.field_violations] == [("agent.display_name", "must not be empty")]


def _details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.BadRequest | None, error_details_pb2.ErrorInfo]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    assert status.code == error.code().value[0]
    assert status.message == error.details()
    bad_request, info = None, None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
    assert info is not None, "no ErrorInfo in the status"
    return bad_request, info


async def test_a_reason_travels_as_error_info_with_its_service_domain(channel):
    error = await _call(channel, "Reason")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "slow down"
    bad_request, info = _details(error)
    assert bad_request is None
    assert (info.reason, info.domain) == ("RATE_LIMITED", "identity.vocelio.com")
    assert dict(info.metadata) == {"limit": "per_address"}


async def test_error_info_travels_alongside_bad_request(channel):
    error = await _call(channel, "InvalidReason")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_request, info = _details(error)
    assert bad_request is not None
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("grant_type", "is not supported")]
    assert info.reason == "UNSUPPORTED_GRANT_TYPE"


async def test_an_error_without_details_is_a_plain_status(channel):
    error = await _call(channel, "Domain")
    assert rpc_status.from_call(error) is None  # type: ignore[arg-type]


async def test_unknown_errors_become_internal_without_leaking(channel, caplog):
    with caplog.at_level(logging.ERROR, logger="interceptors.errors"):
        error = await _call(channel, "Bug")
    assert error.code() == grpc.StatusCode.INTERNAL
    details = error.details() or ""
    assert details.startswith("internal error (incident ")
    assert "hunter2" not in details
    assert "SELECT" not in details
    incident = details.split()[-1].rstrip(")")
    logged = [r for r in caplog.records if incident in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None


async def test_an_unreachable_database_is_unavailable_without_leaking(channel, caplog):
    with caplog.at_level(logging.WARNING, logger="interceptors.errors"):
        error = await _call(channel, "DatabaseGone")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    details = error.details() or ""
    assert details.startswith("the service's database is unreachable; retry (incident ")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "OperationalError" in logged
    assert "hunter2" not in details + logged
    assert "SELECT" not in details + logged


async def test_a_database_bug_stays_internal(channel):
    error = await _call(channel, "DatabaseBug")
    assert error.code() == grpc.StatusCode.INTERNAL


async def test_aborts_pass_through_untouched(channel):
    error = await _call(channel, "Abort")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "no"


async def test_success_is_untouched(channel):
    assert await channel.unary_unary("/test.Errors/Echo")(b"hello", timeout=5) == b"hello"


async def test_streams_map_errors_after_partial_output(channel):
    call = channel.unary_stream("/test.Errors/StreamFail")(b"x", timeout=5)
    assert await call.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.ABORTED


async def test_stream_bugs_become_internal(channel):
    call = channel.unary_stream("/test.Errors/StreamBug")(b"x", timeout=5)
    received = [message async for message in _drain(call)]
    assert received == [b"first"]
    assert await call.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (await call.details())


async def _drain(call):
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError:
        return
