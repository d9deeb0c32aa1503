"""The trivial ``GetPing`` server of ``bench.chain``: bare grpc.aio, or the full chain of a real ``ServiceHost``.

``/benchmark.v1.BenchmarkService/GetPing`` (``tests/protos/benchmark/v1/benchmark.proto``) answers one
constant ``GetPingResponse`` from the same counting servicer in either mode:

* ``bare``: a plain ``grpc.aio`` server (no wrappers, no interceptors; the server options of
  ``runtime.server``), the servicer added directly;
* ``full``: ``runtime.server.ServiceHost`` itself, with a real ``Registry`` from the tests' descriptor set,
  the contract's own access table, and the servicer as its ``implementation``. Whatever per-call behaviour
  ``ServiceHost`` composes (errors, authentication, rate limits, RBAC, validation, tracing, metrics, per-RPC
  logs, …) is therefore measured, without being listed here. The host's settings come from the environment
  (``Settings.from_environ``), so the bench switches tracing, metrics and logs with the variables a service
  process reads. Only the token source is a test one: the key set in ``--jwks`` (no identity service, no
  revocation stream), as ``tests/support/mesh.trusting`` does.

The handler counts the calls it answered: on ``SIGUSR1`` the server prints ``served ok=N failed=M`` (as
``bench.upstream``). A call refused by the chain never reaches the handler, so it is never counted as OK.

Run with ``python -m bench.chain_upstream --mode full --jwks keys.json``; the first line printed is
``chain bench server (full) on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import sys
from collections.abc import Mapping
from typing import Any

import benchmark
import grpc
from benchmark.v1 import benchmark_pb2 as pb
from benchmark.v1 import benchmark_pb2_grpc as pb_grpc

from bench.upstream import COUNT_PREFIX
from mesh import logs
from mesh.access import AccessTable
from mesh.config import ConfigError, Settings
from mesh.errors import NotFound
from mesh.jwks import StaticKeys
from mesh.registry import Registry
from mesh.telemetry import tracing
from runtime.handlers import ServiceContext
from runtime.security import SecurityOptions
from runtime.server import _SERVER_OPTIONS, ServiceHost

READY_PREFIX = "chain bench server "
METHOD = "/benchmark.v1.BenchmarkService/GetPing"
PING = "pings/p_bench"
MODES = ("bare", "full")
DESCRIPTOR_SET = pathlib.Path(next(iter(benchmark.__path__))).parent / "testing.binpb"

REQUEST = pb.GetPingRequest(name=PING)
RESPONSE = pb.GetPingResponse(ping=pb.Ping(name=PING, message="A constant answer: the chain is all there is."))
"""What every ``GetPing`` answers (built once; only its serialisation is paid per call, in both modes)."""


class CountingPings(pb_grpc.BenchmarkServiceServicer):
    """``GetPing`` returning :data:`RESPONSE`, counting the calls it answered."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0

    async def GetPing(
        self, request: pb.GetPingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetPingResponse:
        """The constant response, counted; any other name is NOT_FOUND, counted as failed."""
        if request.name != PING:
            self.failed += 1
            raise NotFound(f"{request.name} not found")
        self.ok += 1
        return RESPONSE

    def report(self) -> None:
        """Print the counters as one line the bench parses (the same line as ``bench.upstream``)."""
        print(f"{COUNT_PREFIX}ok={self.ok} failed={self.failed}", flush=True)


class Implementation:
    """The ``implementation`` handed to ``ServiceHost``: registers the counting servicer."""

    def __init__(self, servicer: CountingPings) -> None:
        self.servicer = servicer

    def register(self, server: grpc.aio.Server, context: ServiceContext) -> None:
        """Add the servicer to the host's (chained) server."""
        pb_grpc.add_BenchmarkServiceServicer_to_server(self.servicer, server)  # type: ignore[no-untyped-call]


def start_process(settings: Settings, environ: Mapping[str, str]) -> tracing.Tracing:
    """What a service process sets up before its host, as ``python -m runtime serve NAME`` does.

    Keep in step with ``runtime/__main__.py``: a process-wide set-up added there belongs here too, or the
    full server would be measured without it. Returns the tracing set-up, to shut down (flush) at exit.
    """
    logs.configure(settings.log_level, "benchmark", settings.log_format)
    return tracing.configure("benchmark", environ)


async def _until_sigterm(servicer: CountingPings) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, servicer.report)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def serve_bare(port: int) -> None:
    """The servicer on a plain grpc.aio server on 127.0.0.1:``port`` until SIGTERM."""
    servicer = CountingPings()
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    pb_grpc.add_BenchmarkServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"{READY_PREFIX}(bare) on 127.0.0.1:{bound}", flush=True)
    await _until_sigterm(servicer)
    await server.stop(grace=None)


async def serve_full(port: int, settings: Settings, jwks: dict[str, Any]) -> None:
    """The servicer behind a real ``ServiceHost`` on 127.0.0.1:``port`` until SIGTERM."""
    registry = Registry.from_descriptor_set(DESCRIPTOR_SET)
    servicer = CountingPings()
    host = ServiceHost(
        registry.service("benchmark"),
        settings,
        registry,
        port=port,
        security=SecurityOptions(keys=StaticKeys(jwks), watch_revocations=False, api_keys=False),
        access=AccessTable(registry),
        implementation=Implementation(servicer),
    )
    await host.start()
    try:
        print(f"{READY_PREFIX}(full) on {settings.host}:{host.port}", flush=True)
        await _until_sigterm(servicer)
    finally:
        await host.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.chain_upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free one)")
    parser.add_argument("--mode", choices=MODES, required=True, help="bare: plain grpc.aio; full: ServiceHost")
    parser.add_argument("--jwks", type=pathlib.Path, help="JSON key set whose tokens the full server trusts")
    args = parser.parse_args(argv)
    if args.mode == "bare":
        asyncio.run(serve_bare(args.port))
        return 0
    if args.jwks is None:
        parser.error("--mode full needs --jwks")
    try:
        settings = Settings.from_environ(os.environ)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    traces = start_process(settings, os.environ)
    try:
        asyncio.run(serve_full(args.port, settings, json.loads(args.jwks.read_text())))
    finally:
        traces.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
