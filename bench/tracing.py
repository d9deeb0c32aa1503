"""``make bench-tracing``: what tracing costs a trivial unary call, in CPU µs per call.

Tracing runs with the pipeline a deployment has: a ``BatchSpanProcessor`` and the OTLP/HTTP exporter
sending to a local collector sink (a thread that accepts and discards the batches). Three measures:

* **wrapper**: the composed server behaviour awaited directly with a stand-in servicer context (no
  network): untraced, our ``interceptors/tracing.py`` wrapper, and the same with a ``traceparent`` to
  continue — the wrapper's own cost, span export included (the batch exporter runs on its thread);
* **served**: sequential calls over a real channel to a real server on port 0: bare grpc.aio, with the
  wrapper composed once per method (``ChainedServer``), with opentelemetry-instrumentation-grpc's aio
  server interceptor instead, and with that package's aio client interceptors on the channel too
  (what ``MeshClients`` adds for service-to-service calls);
* **point read span**: the span ``mesh/reads.py`` wraps a point read in.

Each figure is the best of several rounds, so a busy machine inflates it as little as can be.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from interceptors.chain import chained_server
from interceptors.tracing import traced
from mesh.telemetry import tracing

METHOD = "/bench.Trivial/Echo"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def echo(request: bytes, context: Any) -> bytes:
    return request


class _Context:
    """Just what the wrapper reads of a ``grpc.aio.ServicerContext``."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def code(self) -> None:
        return None

    def details(self) -> None:
        return None


class _Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


_FLUSH: list[Callable[[], object]] = []


async def best_of(call: Callable[[], Awaitable[object]], number: int, rounds: int) -> float:
    """The best of ``rounds`` timings of ``number`` sequential awaits, in CPU µs per call.

    CPU time of the whole process (the exporter's thread too), and each round ends with the spans it
    made exported (a flush), so the figure is the full cost of a traced call, not just its share
    before the batch leaves; CPU time rather than wall time, since other work shares this machine.
    """
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(number):
            await call()
        for flush in _FLUSH:
            flush()
        best = min(best, (time.process_time() - started) / number * 1e6)
    return best


async def served(server: grpc.aio.Server, number: int, rounds: int, *, client_tracing: bool = False) -> float:
    """µs per sequential call to ``server``'s echo method."""
    handler = grpc.method_handlers_generic_handler("bench.Trivial", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    interceptors: list[Any] = aio_client_interceptors() if client_tracing else []  # type: ignore[no-untyped-call]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors) as channel:
            call = channel.unary_unary(METHOD, None, None)
            await best_of(lambda: call(b"x"), number // 5, 1)  # warm up
            return await best_of(lambda: call(b"x"), number, rounds)
    finally:
        await server.stop(None)


async def run(number: int, rounds: int) -> list[tuple[str, float]]:
    """Every measure, labelled."""
    results: list[tuple[str, float]] = []
    plain = _Context(())
    parented = _Context((("traceparent", TRACEPARENT),))
    untraced_behaviour = traced(METHOD, echo)  # tracing is not configured yet: the behaviour itself
    assert untraced_behaviour is echo
    results.append(
        ("wrapper: tracing off (OTEL_SDK_DISABLED)", await best_of(lambda: echo(b"x", plain), number, rounds))
    )
    untraced_served = await served(grpc.aio.server(), number // 4, rounds)

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sink.server_address[1]}/v1/traces")
    # A queue big enough for a round: every span is exported (and paid for), none dropped.
    tracing.install(provider, (BatchSpanProcessor(exporter, max_queue_size=max(2048, number)),))
    _FLUSH.append(provider.force_flush)
    try:
        behaviour = traced(METHOD, echo)
        results.append(("wrapper: traced, new trace", await best_of(lambda: behaviour(b"x", plain), number, rounds)))
        results.append(
            (
                "wrapper: traced, continuing traceparent",
                await best_of(lambda: behaviour(b"x", parented), number, rounds),
            )
        )
        results.append(("served: bare grpc.aio", untraced_served))
        results.append(
            ("served: traced wrapper (ChainedServer)", await served(chained_server([traced]), number // 4, rounds))
        )
        results.append(
            (
                "served: instrumentation-grpc aio server interceptor",
                await served(grpc.aio.server(interceptors=[aio_server_interceptor()]), number // 4, rounds),  # type: ignore[no-untyped-call]
            )
        )
        results.append(
            (
                "served: traced wrapper + instrumentation-grpc client interceptors",
                await served(chained_server([traced]), number // 4, rounds, client_tracing=True),
            )
        )
        tracer = trace.get_tracer("bench")

        async def point_read_span() -> None:
            with tracer.start_as_current_span(
                "SELECT agents", kind=trace.SpanKind.CLIENT, attributes={"db.system": "sqlite"}
            ):
                pass

        results.append(("point read span", await best_of(point_read_span, number, rounds)))
    finally:
        provider.shutdown()
        sink.shutdown()
        sink.server_close()
    return results


def main() -> int:
    """Time each measure and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=20_000, help="calls per round (served: a quarter of it)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.number, args.rounds))
    width = max(len(label) for label, _ in results)
    for label, micros in results:
        print(f"{label:<{width}}  {micros:8.2f} µs/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
