"""``make bench-logs``: what logging costs per line and per call, in µs.

1. One log line, to a file: the process CPU it costs (every thread: the caller's record
   and queue put, the writer's formatting and write) and the caller's wall time, for the
   queue pipeline of ``mesh/logs.py`` in JSON and text and for a plain synchronous
   ``StreamHandler`` (JSON, and the old text format).
2. The server wrappers alone (``with_request_id``, ``rpc_logged``) around a trivial
   behaviour, called directly with a stand-in context: no transport, only their own CPU.
3. Real unary calls on 127.0.0.1 (sequential, one channel): a bare server, the server with
   the request-id and RPC-log wrappers, and a client channel with the request-id
   interceptors; the set-ups take turns round by round so that they share the noise.

Each figure is the best of several rounds, so a busy machine inflates it as little as can be.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import grpc

from interceptors.chain import Behaviour, chained_server
from interceptors.client_request_id import client_request_id_interceptors
from interceptors.request_id import with_request_id
from interceptors.rpc_log import rpc_logged
from mesh import logs, request_id

PATH = "/bench.Logs/Echo"
FIELDS = {
    "service": "bench.Logs",
    "method": "Echo",
    "code": "OK",
    "duration_ms": 0.123,
    "principal": "users/u_1",
    "organization": "org_1",
    "client_address": "127.0.0.1",
    "peer": "ipv4:127.0.0.1:5000",
}


def _best(rounds: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(rounds))


def _line_costs(directory: pathlib.Path, lines: int, rounds: int) -> list[tuple[str, float, float]]:
    """(label, CPU µs per line in all threads, caller's wall µs per line) for each set-up."""
    logger = logging.getLogger("bench.logs")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    results = []
    for label, log_format in (("queue + JSON", "json"), ("queue + text", "text")):

        def queued(log_format: str = log_format) -> tuple[float, float]:
            with (directory / f"{log_format}.log").open("w") as stream:
                pipeline = logs.LogPipeline(stream, logs.formatter_for(log_format, "bench", stream))  # type: ignore[arg-type]
                logger.handlers[:] = [pipeline.handler]
                began, cpu = time.perf_counter(), time.process_time()
                for _ in range(lines):
                    logger.info("%s %s %.2f ms", PATH, "OK", 0.123, extra={"fields": FIELDS})
                called = time.perf_counter() - began
                pipeline.close(timeout=60)
                return called, time.process_time() - cpu

        timings = [queued() for _ in range(rounds)]
        results.append((label, min(t[1] for t in timings) / lines * 1e6, min(t[0] for t in timings) / lines * 1e6))
    for label, formatter in (
        ("direct StreamHandler + JSON", logs.JsonFormatter("bench")),
        ("direct StreamHandler + old text", logging.Formatter("%(asctime)s %(levelname)s bench %(name)s: %(message)s")),
    ):

        def direct(formatter: logging.Formatter = formatter) -> float:
            with (directory / "direct.log").open("w") as stream:
                handler = logging.StreamHandler(stream)
                handler.setFormatter(formatter)
                handler.addFilter(logs.CallContext())
                logger.handlers[:] = [handler]
                began = time.process_time()
                for _ in range(lines):
                    logger.info("%s %s %.2f ms", PATH, "OK", 0.123, extra={"fields": FIELDS})
                return time.process_time() - began

        cost = _best(rounds, direct) / lines * 1e6
        results.append((label, cost, cost))
    logger.handlers[:] = []
    return results


class _Context:
    """The little of a ServicerContext the wrappers read."""

    def __init__(self) -> None:
        self._metadata = (("x-request-id", "req-bench-1"), ("user-agent", "bench"), ("authorization", "Bearer x"))

    def invocation_metadata(self) -> Any:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def code(self) -> Any:
        return None


async def _echo(request: Any, context: Any) -> Any:
    return request


async def _wrapper_costs(calls: int, rounds: int) -> list[tuple[str, float]]:
    context = _Context()
    chains: list[tuple[str, list[Callable[[str, Behaviour], Behaviour]]]] = [
        ("bare behaviour", []),
        ("with_request_id", [with_request_id]),
        ("rpc_logged (level off: no line)", [rpc_logged]),
        ("rpc_logged (line written)", [rpc_logged]),
        ("with_request_id + rpc_logged (line written)", [with_request_id, rpc_logged]),
    ]
    rpc_logger = logging.getLogger("vocelio.rpc")
    results = []
    for label, wrappers in chains:
        behaviour: Behaviour = _echo
        for wrap in reversed(wrappers):
            behaviour = wrap(PATH, behaviour)
        rpc_logger.setLevel(logging.WARNING if "level off" in label else logging.INFO)
        best = float("inf")
        for _ in range(rounds):
            began = time.process_time()
            for _ in range(calls):
                await behaviour(b"x", context)
            best = min(best, time.process_time() - began)
        results.append((label, best / calls * 1e6))
    rpc_logger.setLevel(logging.NOTSET)
    return results


async def _call_costs(calls: int, rounds: int) -> list[tuple[str, float]]:
    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    setups: list[tuple[str, Any, grpc.aio.Channel, Any]] = []
    for label, wrappers, client_interceptors in (
        ("bare grpc.aio server", [], []),
        ("server + with_request_id + rpc_logged", [with_request_id, rpc_logged], []),
        ("bare server, client + request-id interceptors", [], client_request_id_interceptors()),
    ):
        server = chained_server(wrappers)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Logs", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=client_interceptors or None)
        # With the interceptors the id comes from the bound one; without, as metadata: the same bytes go out.
        metadata = None if client_interceptors else (("x-request-id", "req-bench-1"),)
        setups.append((label, server, channel, (channel.unary_unary(PATH), metadata)))  # type: ignore[call-arg]
    best = {label: float("inf") for label, *_ in setups}
    try:
        with request_id.bound("req-bench-1"):
            for round_number in range(rounds + 1):
                for label, _server, _channel, (call, metadata) in setups:
                    began = time.perf_counter()
                    for _ in range(calls if round_number else 200):  # round 0 warms up
                        await call(b"x", metadata=metadata)
                    if round_number:
                        best[label] = min(best[label], time.perf_counter() - began)
    finally:
        for _label, server, channel, _call in setups:
            await channel.close(None)
            await server.stop(None)
    return [(label, cost / calls * 1e6) for label, cost in best.items()]


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and print µs per line / per call."""
    parser = argparse.ArgumentParser(prog="python -m bench.logs", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    # The RPC lines of parts 2 and 3 go through the real pipeline, into a file.
    with tempfile.TemporaryDirectory() as directory, (pathlib.Path(directory) / "rpc.log").open("w") as rpc_log:
        pipeline = logs.configure("INFO", "bench", "json", stream=rpc_log)
        print(f"1. one log line with the RPC fields, {args.lines} lines, best of {args.rounds}")
        print(f"   {'set-up':<36} {'CPU µs/line':>12} {'caller wall µs/line':>20}")
        for label, cpu, caller in _line_costs(pathlib.Path(directory), args.lines, args.rounds):
            print(f"   {label:<36} {cpu:>12.2f} {caller:>20.2f}")
        print(f"2. the server wrappers alone, {args.calls * 10} calls, best of {args.rounds}")
        for label, cost in asyncio.run(_wrapper_costs(args.calls * 10, args.rounds)):
            print(f"   {label:<46} {cost:>7.2f} µs/call")
        print(f"3. real unary calls on 127.0.0.1, {args.calls} sequential calls, best of {args.rounds}")
        costs = asyncio.run(_call_costs(args.calls, args.rounds))
        bare = costs[0][1]
        for label, cost in costs:
            print(f"   {label:<46} {cost:>7.1f} µs/call  ({bare / cost:.2f} × bare throughput)")
        pipeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
