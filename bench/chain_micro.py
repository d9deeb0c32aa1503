"""The server chain in one process, without a network: µs per call, layer by layer.

``make bench``'s chain section measures whole servers, whose CPU per call drifts by more than one wrapper
costs. This drives the wrappers ``runtime.server.ServiceHost`` composes for ``GetPing`` (the bench's
trivial method, ``bench.chain_upstream``) directly, with a stand-in servicer context that answers what
grpc.aio's would (the bench's metadata: a VIEWER token, h2load's user agent; a peer; a deadline), each call
in a task of its own as grpc.aio runs it. It reports:

* the bare handler (a task, the servicer), the baseline;
* the composed chain of a real host (telemetry as the environment says, like a service process);
* for each wrapper, from the innermost outwards, what adding it costs (the inner ones run under a principal
  the driver binds, so RBAC and the rate limit work before authentication is added).

Run ``PYTHONPATH=. .venv/bin/python -m bench.chain_micro`` (``--calls``, ``--repeat``). Figures are the least
of ``--repeat`` runs (other work on the machine only ever adds to a run), in µs of this process's CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from benchmark.v1 import benchmark_pb2_grpc as pb_grpc

from bench.chain_upstream import DESCRIPTOR_SET, METHOD, REQUEST, CountingPings, start_process
from interceptors.chain import Behaviour, Guard, Wrapper, compose
from mesh.access import AccessTable
from mesh.config import Settings
from mesh.jwks import StaticKeys
from mesh.principal import acting_as
from mesh.registry import Registry
from runtime.security import SecurityOptions
from runtime.server import ServiceHost
from tests.support.tokens import TestIssuer

_Metadatum = collections.namedtuple("_Metadatum", ("key", "value"))
PEER = "ipv4:127.0.0.1:40312"
USER_AGENT = "h2load nghttp2/1.59.0"


class StandInContext:
    """What the chain asks of a ``grpc.aio.ServicerContext``, answered as grpc.aio would for the bench's call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], deadline: float | None = 30.0) -> None:
        self._metadata = tuple((key.encode(), value.encode()) for key, value in metadata)
        self._deadline = None if deadline is None else time.monotonic() + deadline
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's metadata, converted anew, as grpc.aio does."""
        # grpc.aio converts the call's metadata anew on every call (~3.5 µs for the bench's entries there)
        return tuple(_Metadatum(key.decode(), value.decode()) for key, value in self._metadata)

    def peer(self) -> str:
        """The bench client's address."""
        return PEER

    def time_remaining(self) -> float | None:
        """Seconds to the call's deadline."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def code(self) -> grpc.StatusCode | None:
        """The code set on the call, if any."""
        return self._code

    def details(self) -> str | None:
        """The details set on the call, if any."""
        return self._details

    def set_code(self, code: grpc.StatusCode) -> None:
        """Set the call's code."""
        self._code = code

    def set_details(self, details: str) -> None:
        """Set the call's details."""
        self._details = details

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        """End the call with ``code``, as grpc.aio's abort does (by raising)."""
        self._code, self._details = code, details
        raise grpc.aio.AbortError(details)


def _host(environ: dict[str, str], jwks: dict[str, Any], var: pathlib.Path) -> ServiceHost:
    settings = Settings.from_environ({**environ, "VOCELIO_VAR_DIR": str(var)})
    registry = Registry.from_descriptor_set(DESCRIPTOR_SET)
    return ServiceHost(
        registry.service("benchmark"),
        settings,
        registry,
        port=0,
        security=SecurityOptions(keys=StaticKeys(jwks), watch_revocations=False, api_keys=False),
        access=AccessTable(registry),
        serve_metrics=False,
        relay=False,
    )


def _handler(servicer: CountingPings) -> grpc.RpcMethodHandler[Any, Any]:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    class Collect:
        def add_registered_method_handlers(self, _service: str, methods: dict[str, Any]) -> None:
            handlers.update(methods)

        def add_generic_rpc_handlers(self, _handlers: Any) -> None:
            """The same handlers, for servers without registered methods (not needed here)."""

    pb_grpc.add_BenchmarkServiceServicer_to_server(servicer, Collect())  # type: ignore[no-untyped-call]
    return handlers[METHOD.rsplit("/", 1)[1]]


def _unary(handler: Any) -> Behaviour:
    behaviour: Behaviour | None = handler.unary_unary
    if behaviour is None:
        raise RuntimeError("GetPing is not a unary method")
    return behaviour


async def _per_call_us(
    behaviour: Behaviour, make_context: Callable[[], StandInContext], calls: int, repeat: int
) -> float:
    """The least CPU µs per call over ``repeat`` runs of ``calls`` calls, each in a task of its own."""

    async def one() -> Any:
        return await behaviour(REQUEST, make_context())

    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(calls):
            await asyncio.create_task(one())
        best = min(best, (time.process_time() - started) / calls * 1e6)
    return best


def _name(wrapper: Callable[..., Any]) -> str:
    if isinstance(wrapper, Guard):
        return _name(wrapper.check_for) + " (guard)"
    qualified = getattr(wrapper, "__qualname__", type(wrapper).__name__)
    module = getattr(wrapper, "__module__", "")
    return f"{module.rsplit('.', 1)[-1]}.{qualified.split('.<locals>')[0]}"


async def measure(wrappers: Sequence[Wrapper], token: str, principal: Any, calls: int, repeat: int) -> None:
    """Print the baseline, the whole chain, and what each wrapper adds (innermost first)."""
    servicer = CountingPings()
    handler = _handler(servicer)
    metadata = (("user-agent", USER_AGENT), ("authorization", f"Bearer {token}"))

    def context() -> StandInContext:
        return StandInContext(metadata)

    bare = await _per_call_us(_unary(handler), context, calls, repeat)
    whole = await _per_call_us(_unary(compose(METHOD, handler, wrappers)), context, calls, repeat)
    print(f"bare handler (a task + the servicer): {bare:7.1f} µs/call")
    print(f"full chain ({len(wrappers)} wrappers):            {whole:7.1f} µs/call  (+{whole - bare:.1f})")
    print("each wrapper, innermost first (run under the bench principal):")
    previous = bare
    with acting_as(principal):
        for count in range(1, len(wrappers) + 1):
            inner = wrappers[len(wrappers) - count :]
            cost = await _per_call_us(_unary(compose(METHOD, handler, inner)), context, calls, repeat)
            wrapped = _unary(compose(METHOD, handler, inner[:1])) is not _unary(handler)
            note = "" if wrapped else "  (not wrapped for this method)"
            print(f"  + {_name(inner[0]):40s} {cost - previous:+6.1f} µs{note}")
            previous = cost
    if servicer.failed or not servicer.ok:
        raise RuntimeError(f"the servicer answered {servicer.ok} OK / {servicer.failed} failed")


async def _main(calls: int, repeat: int) -> None:
    issuer = TestIssuer()
    token = issuer.mint(role="VIEWER", lifetime=900)
    environ = {"VOCELIO_RATE_LIMIT_READ": "1000000:1000000", **os.environ}
    with tempfile.TemporaryDirectory() as var:
        host = _host(environ, issuer.jwks, pathlib.Path(var))
        wrappers = getattr(host.server, "wrappers", ())
        principal = await host.authenticator.authenticate((("authorization", f"Bearer {token}"),))
        await measure(wrappers, token, principal, calls, repeat)
        await host.clients.close()
        await host.database.dispose()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and measure."""
    parser = argparse.ArgumentParser(prog="python -m bench.chain_micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the least is printed (default 5)")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    settings = Settings.from_environ(environ)
    traces = start_process(settings, environ)
    try:
        asyncio.run(_main(args.calls, args.repeat))
    finally:
        traces.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
