"""``make bench-metrics``: what the metrics wrappers add to a call, in µs per call.

The server wrapper (``interceptors.metrics``) around a trivial unary behaviour, called
directly with a stand-in context (no transport, so the figure is the wrapper's own cost),
for a call that succeeds and for one that aborts; then a real grpc.aio round trip of a
trivial method, bare and with the wrapper composed, and the client interceptors on top.
Each figure is the best of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from interceptors.chain import chained_server
from interceptors.client_metrics import ClientMetrics, StreamMetricsInterceptor, UnaryMetricsInterceptor
from interceptors.metrics import ServerMetrics


class _Context:
    """Just what the wrapper reads of a servicer context."""

    def __init__(self, code: grpc.StatusCode | None = None) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def time_remaining(self) -> float | None:
        return None


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _aborted(request: bytes, context: Any) -> bytes:
    raise grpc.aio.AbortError()


async def _best(run: Callable[[], Awaitable[None]], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        await run()
        best = min(best, (time.perf_counter() - began) / calls * 1e6)
    return best


async def wrapper_cost(calls: int, rounds: int) -> dict[str, float]:
    """µs per call of the bare behaviour and of the wrapped one (success, abort)."""
    metrics = ServerMetrics(CollectorRegistry())
    wrapped_ok = metrics.measured("/bench.B/Echo", _echo)
    wrapped_abort = metrics.measured("/bench.B/Fail", _aborted)
    ok, failed = _Context(), _Context(grpc.StatusCode.NOT_FOUND)

    async def bare() -> None:
        for _ in range(calls):
            await _echo(b"x", ok)

    async def wrapped() -> None:
        for _ in range(calls):
            await wrapped_ok(b"x", ok)

    async def aborting() -> None:
        for _ in range(calls):
            with contextlib.suppress(grpc.aio.AbortError):
                await wrapped_abort(b"x", failed)

    base = await _best(bare, calls, rounds)
    return {
        "bare behaviour": base,
        "wrapped, OK": await _best(wrapped, calls, rounds),
        "wrapped, aborted": await _best(aborting, calls, rounds),
    }


async def round_trip_cost(calls: int, rounds: int) -> dict[str, float]:
    """µs per sequential unary call over loopback: bare, with the server wrapper, plus the client interceptors."""
    results: dict[str, float] = {}
    handler = {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    metrics = ServerMetrics(CollectorRegistry())
    client = ClientMetrics(CollectorRegistry())
    metered_client: list[Any] = [UnaryMetricsInterceptor(client), StreamMetricsInterceptor(client)]
    cases: tuple[tuple[str, list[Any], list[Any]], ...] = (
        ("bare grpc.aio", [], []),
        ("server metrics", [metrics.measured], []),
        ("server + client metrics", [metrics.measured], metered_client),
    )
    for label, wrappers, interceptors in cases:
        server = chained_server(wrappers)
        server.add_registered_method_handlers("bench.B", handler)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors or None)
        echo: Any = channel.unary_unary("/bench.B/Echo")  # type: ignore[call-arg]

        async def run(echo: Any = echo) -> None:
            for _ in range(calls):
                await echo(b"x")

        await run()  # warm up
        results[label] = await _best(run, calls, rounds)
        await channel.close(None)
        await server.stop(None)
    return results


async def _main(calls: int, rounds: int) -> None:
    print("server wrapper, called directly (µs/call, best of rounds):")
    direct = await wrapper_cost(calls * 20, rounds)
    for label, micros in direct.items():
        print(f"  {label:<26} {micros:8.2f}")
    print(f"  {'the wrapper adds':<26} {direct['wrapped, OK'] - direct['bare behaviour']:8.2f}")
    print("sequential unary round trips over loopback (µs/call, best of rounds):")
    trips = await round_trip_cost(calls, rounds)
    for label, micros in trips.items():
        print(f"  {label:<26} {micros:8.1f}  ({trips['bare grpc.aio'] / micros:.2f}x bare throughput)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.calls, arguments.rounds))


if __name__ == "__main__":
    main()
