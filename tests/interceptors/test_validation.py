"""The validation interceptor on a real server on port 0, behind the errors interceptor."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from validated.v1 import validated_pb2, validated_pb2_grpc

from interceptors.errors import ErrorsInterceptor
from interceptors.validation import ValidationInterceptor


class Validated(validated_pb2_grpc.ValidatedServiceServicer):
    def __init__(self) -> None:
        self.handled = 0

    async def Echo(self, request, context):
        self.handled += 1
        return request

    async def EchoPlain(self, request, context):
        self.handled += 1
        return request

    async def EchoStream(self, request_iterator, context):
        async for request in request_iterator:
            self.handled += 1
            yield request


@pytest.fixture
async def served():
    servicer = Validated()
    server = grpc.aio.server(interceptors=[ErrorsInterceptor(), ValidationInterceptor()])
    validated_pb2_grpc.add_ValidatedServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield validated_pb2_grpc.ValidatedServiceStub(channel), servicer
    await server.stop(None)


def _bad_request(error: grpc.aio.AioRpcError) -> dict[str, str]:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # AioRpcError is a Call
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return {violation.field: violation.description for violation in detail.field_violations}


async def test_a_valid_request_reaches_the_handler(served):
    stub, servicer = served
    request = validated_pb2.EchoRequest(name="echo", labels={"team": "sales"})
    assert await stub.Echo(request, timeout=5) == request
    assert servicer.handled == 1


async def test_an_invalid_request_is_refused_with_every_violation_before_the_handler(served):
    stub, servicer = served
    request = validated_pb2.EchoRequest(
        name="", page_size=-1, labels={"Team": "x"}, draft=validated_pb2.Draft(voice="v" * 20)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Echo(request, timeout=5)
    assert set(_bad_request(caught.value)) == {"name", "page_size", 'labels["Team"]', "draft.voice"}
    assert servicer.handled == 0


async def test_a_request_without_rules_passes_untouched(served):
    stub, servicer = served
    request = validated_pb2.PlainRequest(name="", nested=validated_pb2.PlainNested(note="x" * 5000))
    assert await stub.EchoPlain(request, timeout=5) == request
    assert servicer.handled == 1


async def test_a_stream_is_checked_message_by_message(served):
    stub, servicer = served

    async def requests():
        yield validated_pb2.EchoRequest(name="first")
        yield validated_pb2.EchoRequest(name="")

    call = stub.EchoStream(requests(), timeout=5)
    assert (await call.read()).name == "first"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert list(_bad_request(caught.value)) == ["name"]
    assert servicer.handled == 1
