"""The conformance service's implementation: a real gRPC server for the edge tests.

Run standalone (for benchmarks) with ``python -m tests.support.conformance_server PORT``.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from typing import Any

import grpc
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from conformance.v1 import conformance_pb2 as pb
from conformance.v1 import conformance_pb2_grpc as pb_grpc


class Conformance(pb_grpc.ConformanceServiceServicer):
    async def GetItem(self, request, context):
        if request.name.endswith("/missing"):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} does not exist")
        return pb.Item(name=request.name, display_name="An item", count=3, big=9007199254740993)

    async def EchoQuery(self, request, context):
        return request

    async def EchoBody(self, request, context):
        return request

    async def EchoTags(self, request, context):
        return request

    async def CreateItem(self, request, context):
        item = pb.Item()
        item.CopyFrom(request.item)
        item.name = f"{request.parent}/items/{request.item_id or 'generated'}"
        return item

    async def UpdateItem(self, request, context):
        item = pb.Item()
        item.CopyFrom(request.item)
        item.mask.CopyFrom(request.update_mask)
        return item

    async def DeleteItem(self, request, context):
        return empty_pb2.Empty()

    async def CancelItem(self, request, context):
        return pb.Item(name=request.name, display_name="cancelled")

    async def GetNested(self, request, context):
        return pb.Item(name=request.name, nested=pb.Nested(id="n1", level=2, inner=pb.Inner(note="deep")))

    async def GetTags(self, request, context):
        return pb.Item(name=request.name, tags=["a", "b"])

    async def GetFile(self, request, context):
        return pb.GetFileResponse(path=request.path)

    async def Download(self, request, context):
        from google.api import httpbody_pb2

        return httpbody_pb2.HttpBody(content_type="text/csv", data=f"name\n{request.name}\n".encode())

    async def Upload(self, request, context):
        data = request.payload.data
        return pb.UploadResponse(
            name=request.name,
            content_type=request.payload.content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    async def StreamItems(self, request, context):
        for index in range(request.count):
            if request.fail_code and index == request.fail_after:
                await context.abort(grpc.StatusCode(_code(request.fail_code)), "stream failed on purpose")
            yield pb.Item(name=f"{request.parent}/items/{index}", count=index)
        if request.fail_code and request.fail_after >= request.count:
            await context.abort(grpc.StatusCode(_code(request.fail_code)), "stream failed on purpose")

    async def StreamDownload(self, request, context):
        from google.api import httpbody_pb2

        for index in range(request.count):
            yield httpbody_pb2.HttpBody(content_type="text/plain", data=f"chunk {index}\n".encode())

    async def Fail(self, request, context):
        code = _code(request.code)
        if request.retry_after_ms:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromMilliseconds(request.retry_after_ms)
            packed = any_pb2.Any()
            packed.Pack(retry)
            status = status_pb2.Status(code=request.code, message=request.message, details=[packed])
            await context.abort_with_status(rpc_status.to_status(status))
        if request.with_details:
            details = []
            for message in (
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field="name", description="too short")
                    ]
                ),
                error_details_pb2.ErrorInfo(reason="TESTING", domain="conformance.test", metadata={"k": "v"}),
            ):
                packed = any_pb2.Any()
                packed.Pack(message)
                details.append(packed)
            await context.abort_with_status(
                rpc_status.to_status(status_pb2.Status(code=request.code, message=request.message, details=details))
            )
        context.set_trailing_metadata((("x-failure", "yes"),))
        await context.abort(grpc.StatusCode(code), request.message)

    async def EchoHeaders(self, request, context):
        await context.send_initial_metadata((("x-echo-initial", "hello"),))
        context.set_trailing_metadata((("x-echo-trailer", "bye"), ("x-echo-bin", b"\x00\x01")))
        received = {}
        for key, value in context.invocation_metadata():
            received[key] = value if isinstance(value, str) else value.hex()
        return pb.EchoHeadersResponse(metadata=received)

    async def Sleep(self, request, context):
        await asyncio.sleep(request.milliseconds / 1000)
        return empty_pb2.Empty()

    async def Describe(self, request, context):
        return pb.Item(name=request.name, display_name="described")

    async def Collect(self, request_iterator, context):
        count = 0
        async for _ in request_iterator:
            count += 1
        return pb.Item(count=count)

    async def Hidden(self, request, context):
        return request


def _code(number: int) -> Any:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.value
    return grpc.StatusCode.UNKNOWN.value


async def start(port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    pb_grpc.add_ConformanceServiceServicer_to_server(Conformance(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def _main(port: int) -> None:
    server, bound = await start(port)
    print(f"conformance server on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
