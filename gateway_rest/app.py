"""The edge's ASGI application (Starlette)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway_rest.health import aggregate
from gateway_rest.upstreams import Upstreams


def create_app(upstreams: Upstreams, *, health_timeout: float = 1.0) -> Starlette:
    """Build the edge for these upstreams.

    Routes: ``GET /health`` (200 when every upstream is SERVING, else 503, with per-service
    detail) and ``GET /services`` (the registry with each service's address and health).
    """

    async def health(_request: Request) -> JSONResponse:
        ok, detail = await aggregate(upstreams, health_timeout)
        body = {"status": "SERVING" if ok else "NOT_SERVING", "services": detail}
        return JSONResponse(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    async def services(_request: Request) -> JSONResponse:
        _ok, detail = await aggregate(upstreams, health_timeout)
        body = {
            "services": [
                {
                    "name": u.name,
                    "title": u.title,
                    "address": u.address,
                    "grpc_services": list(u.services),
                    "health": detail[u.name]["status"],
                }
                for u in upstreams.all
            ]
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await upstreams.close()

    return Starlette(
        routes=[Route("/health", health, methods=["GET"]), Route("/services", services, methods=["GET"])],
        lifespan=lifespan,
    )
