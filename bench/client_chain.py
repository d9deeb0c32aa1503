"""``make bench-client``: what the client resilience chain and the server's deadline wrappers cost per call.

1. End to end, on this machine: a trivial unary method served in-process on port 0, called
   through a bare channel and through the mesh's client chain (request id → deadline →
   breaker → bulkhead → credential, with the generated service config), sequentially and
   with a few calls in flight. The difference is the chain's cost (µs per call).
2. The server wrappers alone (``with_deadline``, ``counting_retries``), called directly with
   a stand-in context: ns per call over the bare behaviour.

Each figure is the best of several rounds, so a busy machine inflates it as little as can be.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from interceptors.chain import chained_server
from interceptors.client_auth import client_auth_interceptors
from interceptors.client_breaker import UpstreamCircuit, client_breaker_interceptors
from interceptors.client_bulkhead import Bulkhead, client_bulkhead_interceptors
from interceptors.client_deadline import DeadlineBudget, client_deadline_interceptors
from interceptors.client_idempotency import client_idempotency_interceptors
from interceptors.deadline import with_deadline
from interceptors.retried_attempts import counting_retries
from mesh.resilience.breaker import BreakerPolicy

SERVICE = "bench.Echo"
PATH = f"/{SERVICE}/Call"


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _token() -> str:
    return "bench-token"


def _chain() -> list[Any]:
    return [
        *client_idempotency_interceptors([]),
        *client_deadline_interceptors(DeadlineBudget("bench", "echo", {PATH: 5.0}, margin=0.05)),
        *client_breaker_interceptors(UpstreamCircuit("bench", "echo", BreakerPolicy())),
        *client_bulkhead_interceptors(Bulkhead("bench", "echo", 1000)),
        *client_auth_interceptors(_token),
    ]


async def _rate(call: Callable[[bytes], Awaitable[Any]], *, calls: int, concurrency: int, rounds: int = 5) -> float:
    """Seconds per call, best of ``rounds`` rounds."""
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call(b"x")

    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        best = min(best, (time.perf_counter() - started) / (per_worker * concurrency))
    return best


async def end_to_end(calls: int) -> list[tuple[str, float, float, float]]:
    """(label, bare µs/call, chained µs/call, difference) for sequential and concurrent calls."""
    server = chained_server(())
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(_echo)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    rows = []
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as bare,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=_chain()) as chained,
        ):
            plain = bare.unary_unary(PATH, None, None)
            guarded = chained.unary_unary(PATH, None, None)
            await _rate(plain, calls=200, concurrency=1)  # warm up both channels
            await _rate(guarded, calls=200, concurrency=1)
            for concurrency in (1, 8):
                a = await _rate(plain, calls=calls, concurrency=concurrency)
                b = await _rate(guarded, calls=calls, concurrency=concurrency)
                rows.append((f"{concurrency} in flight", a * 1e6, b * 1e6, (b - a) * 1e6))
    finally:
        await server.stop(None)
    return rows


class _Context:
    """Just what the wrappers read of a ``ServicerContext``."""

    def __init__(self, remaining: float | None) -> None:
        self._remaining = remaining
        self._metadata = (("authorization", "Bearer x"), ("user-agent", "grpc-python"), ("x-request-id", "r"))

    def time_remaining(self) -> float | None:
        return self._remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def wrappers(number: int) -> list[tuple[str, float]]:
    """(label, ns per call over the bare behaviour) of the server wrappers."""
    loop = asyncio.new_event_loop()
    try:
        composed = {
            "bare behaviour": _echo,
            "with_deadline": with_deadline(PATH, _echo),
            "counting_retries": counting_retries(PATH, _echo),
            "both": with_deadline(PATH, counting_retries(PATH, _echo)),
        }

        def drive(behaviour: Any, context: _Context) -> Callable[[], None]:
            def once() -> None:
                with contextlib.suppress(StopIteration):
                    behaviour(b"x", context).send(None)

            return once

        results = []
        for remaining in (None, 5.0):
            context = _Context(remaining)
            times = {
                label: min(timeit.repeat(drive(b, context), number=number, repeat=5)) / number * 1e9
                for label, b in composed.items()
            }
            for label in ("with_deadline", "counting_retries", "both"):
                deadline = "no deadline" if remaining is None else "5 s deadline"
                results.append((f"{label} ({deadline})", times[label] - times["bare behaviour"]))
        return results
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=4000, help="calls per round (end to end)")
    parser.add_argument("--number", type=int, default=200_000, help="calls per round (server wrappers)")
    args = parser.parse_args(argv)
    print("client chain, end to end (µs per call; best of 5 rounds)")
    print(f"  {'':<14}{'bare':>10}{'chain':>10}{'cost':>10}")
    for label, bare, chained, cost in asyncio.run(end_to_end(args.calls)):
        print(f"  {label:<14}{bare:>10.1f}{chained:>10.1f}{cost:>10.1f}")
    print("server wrappers (ns per call over the bare behaviour; best of 5 rounds)")
    for label, cost in wrappers(args.number):
        print(f"  {label:<36}{cost:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
