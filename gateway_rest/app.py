"""The edge's ASGI application (Starlette): operational routes plus the transcoder."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway_rest.descriptors import Catalog
from gateway_rest.health import aggregate
from gateway_rest.metrics import EdgeMetrics
from gateway_rest.transcoder import EdgeOptions, Transcoder
from gateway_rest.upstreams import Upstreams


def create_app(
    upstreams: Upstreams,
    catalog: Catalog | None = None,
    *,
    options: EdgeOptions | None = None,
    cors_origins: Sequence[str] = (),
    extra_routes: Sequence[BaseRoute] = (),
    health_timeout: float = 1.0,
) -> Starlette:
    """Build the edge.

    Routes: ``GET /health`` (200 when every upstream is SERVING, else 503, with
    per-service detail), ``GET /services`` (each upstream's address and health),
    ``GET /metrics`` (Prometheus text), any ``extra_routes`` (OpenAPI, docs), and every
    REST binding of the catalogue.
    """
    metrics = EdgeMetrics()

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

    async def prometheus(_request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await upstreams.close()

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/services", services, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        *extra_routes,
    ]
    middleware = []
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                # Custom HttpRule methods (``custom: {kind: "SEARCH"}``) are allowed too.
                allow_methods=_cors_methods(catalog),
                allow_headers=["*"],
                expose_headers=["X-Request-Id", "Retry-After", "WWW-Authenticate"],
                max_age=600,
            )
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    if catalog is not None:
        # Everything the fixed routes do not claim goes to the transcoder, which answers
        # 404/405 itself as google.rpc.Status JSON (a Mount's regex would miss paths with
        # encoded control characters and answer plain text).
        app.router.default = Transcoder(catalog, upstreams, options or EdgeOptions(), metrics)
    return app


def _cors_methods(catalog: Catalog | None) -> list[str]:
    standard = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    custom = sorted({b.http_method for b in catalog.bindings} - set(standard)) if catalog is not None else []
    return standard + custom
