"""The edge's Kubernetes probes: ``/livez`` (the process is sound) and ``/readyz`` (send it traffic).

``/livez`` answers 200 as long as the worker's event loop answers HTTP, draining or not: a
liveness probe must never restart an edge because a service behind it is down.

``/readyz`` answers 200 when the edge is not draining and can reach every upstream it
routes to (each answers its gRPC health check, whatever the status; an upstream without
the health service counts as reachable). A service that is up but NOT_SERVING (its
database is down) does not take the edge out of rotation: another edge could not do
better, and ``/health`` reports it. From SIGTERM on, ``/readyz`` is 503 while the edge keeps
serving for the drain time, so balancers stop sending new requests before it stops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway_rest.health import check_upstream
from gateway_rest.upstreams import Upstreams

_NO_STORE = {"Cache-Control": "no-store"}
# An upstream that answers, but without grpc.health.v1 (a generic gRPC server), is reachable.
_ANSWERED = frozenset({"UNIMPLEMENTED", "NOT_FOUND"})


class EdgeLifecycle:
    """Whether this edge process is draining (shutdown has begun)."""

    def __init__(self) -> None:
        self.draining = False

    def begin_drain(self) -> None:
        """From now on ``/readyz`` answers 503; requests are still served."""
        self.draining = True


def reachable(result: dict[str, Any]) -> bool:
    """Whether one upstream's health result (:func:`check_upstream`) shows it answering at all."""
    return result["status"] != "UNREACHABLE" or result.get("error") in _ANSWERED


def probe_routes(upstreams: Upstreams, lifecycle: EdgeLifecycle, timeout: float) -> list[Route]:
    """The ``/livez`` and ``/readyz`` routes (public, uncached, GET only)."""

    async def livez(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "SERVING"}, headers=_NO_STORE)

    async def readyz(_request: Request) -> JSONResponse:
        if lifecycle.draining:
            return JSONResponse({"status": "NOT_SERVING", "reason": "draining"}, status_code=503, headers=_NO_STORE)
        results = await asyncio.gather(*(check_upstream(u, timeout) for u in upstreams.all))
        unreachable = sorted(u.name for u, r in zip(upstreams.all, results, strict=True) if not reachable(r))
        if unreachable:
            body = {"status": "NOT_SERVING", "reason": "upstreams unreachable", "unreachable": unreachable}
            return JSONResponse(body, status_code=503, headers=_NO_STORE)
        return JSONResponse({"status": "SERVING"}, headers=_NO_STORE)

    return [Route("/livez", livez, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
