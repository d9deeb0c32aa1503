"""A mesh-style gRPC server for measuring what authentication and RBAC cost per call.

It serves ``vocelio.agents.v1.AgentsService/GetAgent`` with a trivial handler that returns one constant
``GetAgentResponse``, on a ``grpc.aio`` server built like ``runtime.server.ServiceHost`` builds its own (same
server options, the same wrappers composed once per method by ``interceptors.chain.ChainedServer``, in the same
order) in one of two modes:

* ``full``: with_errors → authenticated → authorized, with the real
  ``runtime.security.Authenticator`` (ES256 verification by ``mesh.tokens.TokenVerifier`` against the key set
  in ``--jwks``, the default access table, a revocation set consulted on every call, no API keys);
* ``bare``: with_errors only — the same call without authentication or authorization.

``ServiceHost`` itself is not used: it also opens a database, watches its health and follows identity's
revocation stream, none of which is on the per-call path, and all of which would add noise.

The handler counts the calls it answered, exactly like ``bench.upstream``: on ``SIGUSR1`` the server prints
``served ok=N failed=M``. A call refused by the interceptors never reaches the handler, so it is not counted
as OK — which is how the bench proves that h2load's "successes" really passed authentication.

Run with ``python -m bench.auth_upstream --port 0 --mode full --jwks keys.json``; the first line printed is
``auth bench server (full) on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import signal
from typing import Any

import grpc

from bench.upstream import COUNT_PREFIX
from interceptors.auth import authenticated
from interceptors.chain import Wrapper, chained_server
from interceptors.errors import with_errors
from interceptors.rbac import authorized
from mesh.access import default_access_table
from mesh.config import Settings
from mesh.errors import NotFound
from mesh.jwks import StaticKeys
from mesh.registry import default_registry
from mesh.revocations import RevocationSet
from mesh.tokens import TokenVerifier
from runtime.security import Authenticator
from runtime.server import _SERVER_OPTIONS
from vocelio.agents.v1 import agent_pb2
from vocelio.agents.v1 import agents_service_pb2 as pb
from vocelio.agents.v1 import agents_service_pb2_grpc as pb_grpc

READY_PREFIX = "auth bench server "
METHOD = "/vocelio.agents.v1.AgentsService/GetAgent"
AGENT = "organizations/o_bench/agents/a_bench"
MODES = ("full", "bare")

RESPONSE = pb.GetAgentResponse(
    agent=agent_pb2.Agent(
        name=AGENT,
        organization_id="org_a",
        display_name="Bench agent",
        description="A constant answer: the handler costs next to nothing, so the interceptors stand out.",
        state=agent_pb2.AGENT_STATE_PUBLISHED,
        latest_version=3,
        etag="v3",
    )
)
"""What every ``GetAgent`` answers (built once; only its serialisation is paid per call, in both modes)."""


class CountingAgents(pb_grpc.AgentsServiceServicer):
    """``GetAgent`` returning :data:`RESPONSE`, counting the calls it answered; every other method UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0

    async def GetAgent(
        self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAgentResponse:
        """The constant response, counted; any other name is NOT_FOUND, counted as failed."""
        if request.name != AGENT:
            self.failed += 1
            raise NotFound(f"{request.name} not found")
        self.ok += 1
        return RESPONSE

    def report(self) -> None:
        """Print the counters as one line the bench parses (the same line as ``bench.upstream``)."""
        print(f"{COUNT_PREFIX}ok={self.ok} failed={self.failed}", flush=True)


def wrappers(mode: str, jwks: dict[str, Any]) -> list[Wrapper]:
    """The server wrappers of a mode, in ``ServiceHost``'s order (the first is the outermost)."""
    if mode == "bare":
        return [with_errors]
    settings = Settings()
    registry = default_registry()
    revocations = RevocationSet()
    authenticator = Authenticator(
        TokenVerifier(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            keys=StaticKeys(jwks),
            revocations=revocations,
            max_lifetime=None,  # the bench's one token outlives the whole run (bench.auth.token_lifetime)
        ),
        default_access_table(),
        revocations,
        None,
        api_keys=False,
    )
    return [with_errors, authenticated(registry, authenticator), authorized(registry)]


async def serve(port: int, mode: str, jwks: dict[str, Any]) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM; SIGUSR1 prints the counters."""
    service = CountingAgents()
    server = chained_server(wrappers(mode, jwks), options=_SERVER_OPTIONS)
    pb_grpc.add_AgentsServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, service.report)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"{READY_PREFIX}({mode}) on 127.0.0.1:{bound}", flush=True)
    await stop.wait()
    await server.stop(grace=None)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.auth_upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free one)")
    parser.add_argument("--mode", choices=MODES, required=True, help="full: auth + RBAC interceptors; bare: none")
    parser.add_argument("--jwks", type=pathlib.Path, required=True, help="JSON key set whose tokens to trust")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.mode, json.loads(args.jwks.read_text())))


if __name__ == "__main__":
    main()
