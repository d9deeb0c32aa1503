"""The conformance gRPC server with a call counter, so a benchmark can prove its requests really succeeded.

Load tools count an HTTP 200 as a success even when the gRPC status is an error, so the bench asks the
server how many ``GetItem`` calls it answered with OK before and after each run: send ``SIGUSR1`` and
the server prints ``served ok=N failed=M`` on stdout. The counter is two integer increments per call,
the same cost for the direct and the edge measurement.

Run with ``python -m bench.upstream PORT`` (0 picks a free port); the first line printed is
``conformance server on 127.0.0.1:PORT``, as for ``python -m tests.support.conformance_server``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import grpc

from conformance.v1 import conformance_pb2 as pb
from conformance.v1 import conformance_pb2_grpc as pb_grpc
from tests.support.conformance_server import Conformance

READY_PREFIX = "conformance server on "
COUNT_PREFIX = "served "


class CountingConformance(Conformance):
    """The test service, counting the ``GetItem`` calls it answered with OK and with an error."""

    def __init__(self) -> None:
        super().__init__()
        self.ok = 0
        self.failed = 0

    async def GetItem(self, request: pb.GetItemRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Item:
        """The inherited ``GetItem``, counted."""
        try:
            item: pb.Item = await super().GetItem(request, context)  # type: ignore[no-untyped-call]
        except BaseException:
            self.failed += 1
            raise
        self.ok += 1
        return item

    def report(self) -> None:
        """Print the counters as one line the bench parses."""
        print(f"{COUNT_PREFIX}ok={self.ok} failed={self.failed}", flush=True)


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until terminated; SIGUSR1 prints the counters."""
    service = CountingConformance()
    server = grpc.aio.server()
    pb_grpc.add_ConformanceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, service.report)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"{READY_PREFIX}127.0.0.1:{bound}", flush=True)
    await stop.wait()
    await server.stop(grace=None)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
