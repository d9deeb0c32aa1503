"""The edge's ASGI application (Starlette): operational routes plus the transcoder."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway_rest.descriptors import Catalog
from gateway_rest.health import aggregate
from gateway_rest.metrics import EdgeMetrics
from gateway_rest.metrics_gather import MetricsGatherer, ScrapeTarget
from gateway_rest.ops_access import OpsGuard
from gateway_rest.probes import EdgeLifecycle, probe_routes
from gateway_rest.transcoder import EdgeOptions, Transcoder
from gateway_rest.upstreams import Upstreams
from mesh.telemetry.tracing import active as tracing_active


def create_app(
    upstreams: Upstreams,
    catalog: Catalog | None = None,
    *,
    options: EdgeOptions | None = None,
    cors_origins: Sequence[str] = (),
    extra_routes: Sequence[BaseRoute] = (),
    health_timeout: float = 2.0,
    ops_guard: OpsGuard | None = None,
    lifecycle: EdgeLifecycle | None = None,
    metrics: EdgeMetrics | None = None,
    metrics_targets: Sequence[ScrapeTarget] = (),
    scrape_timeout: float = 3.0,
) -> Starlette:
    """Build the edge.

    Routes: ``GET /health`` (200 when every upstream is SERVING, else 503, with
    per-service detail), ``GET /livez`` and ``GET /readyz`` (the Kubernetes probes,
    ``gateway_rest/probes.py``; ``lifecycle``, kept in ``app.state.lifecycle``, tells them
    when the edge drains), ``GET /services`` (each upstream's address and health),
    ``GET /metrics`` (Prometheus text), any ``extra_routes`` (OpenAPI, docs), and every
    REST binding of the catalogue. With ``ops_guard``, ``/services`` and ``/metrics``
    answer only requests it lets through (``/health`` stays public, for probes).
    ``/metrics`` shows the edge's series (``metrics``, new by default) and, merged, those of
    every ``metrics_targets`` service (``gateway_rest.metrics_gather``).
    """
    if metrics is None:
        metrics = EdgeMetrics(known_methods=frozenset(_cors_methods(catalog)))
    gatherer = MetricsGatherer(metrics.render, metrics_targets, scrape_timeout) if metrics_targets else None
    lifecycle = lifecycle or EdgeLifecycle()

    async def health(_request: Request) -> JSONResponse:
        ok, detail = await aggregate(upstreams, health_timeout)
        body = {"status": "SERVING" if ok else "NOT_SERVING", "services": detail}
        return JSONResponse(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    async def services(request: Request) -> Response:
        if ops_guard is not None and (refused := await ops_guard(request)) is not None:
            return refused
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

    async def prometheus(request: Request) -> Response:
        if ops_guard is not None and (refused := await ops_guard(request)) is not None:
            return refused
        body = await gatherer.render() if gatherer is not None else metrics.render()
        return Response(body, media_type=metrics.content_type, headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await upstreams.close()

    cors: dict[str, Any] | None = (
        {
            "allow_origins": list(cors_origins),
            # Custom HttpRule methods (``custom: {kind: "SEARCH"}``) are allowed too.
            "allow_methods": _cors_methods(catalog),
            "allow_headers": ["*"],
            "expose_headers": ["X-Request-Id", "Retry-After", "WWW-Authenticate", "traceresponse"],
            "max_age": 600,
        }
        if cors_origins
        else None
    )
    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        *probe_routes(upstreams, lifecycle, health_timeout),
        Route("/services", services, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        *extra_routes,
    ]
    middleware = [Middleware(CORSMiddleware, **cors)] if cors else []
    app = Edge(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.lifecycle = lifecycle
    app.state.metrics = metrics  # fixed routes that call upstreams (the OAuth endpoints) count themselves
    if catalog is not None:
        # Everything the fixed routes do not claim goes to the transcoder, which answers
        # 404/405 itself as google.rpc.Status JSON (a Mount's regex would miss paths with
        # encoded control characters and answer plain text).
        transcoder = Transcoder(catalog, upstreams, options or EdgeOptions(), metrics)
        app.router.default = transcoder
        fixed = [route.path for route in routes if isinstance(route, Route)]
        bound = {_first_segment(binding.template.source) for binding in catalog.bindings}
        # A fixed route with a literal path under an API segment (``/v1/auth/token``) keeps the
        # shortcut for the rest of that segment; one with a template takes the whole segment off it.
        segments = bound - {_first_segment(path) for path in fixed if "{" in path}
        claimed = frozenset(path for path in fixed if _first_segment(path) in segments)
        app.direct(CORSMiddleware(transcoder, **cors) if cors else transcoder, frozenset(segments), claimed)
    if tracing_active():
        app.trace(frozenset(route.path for route in app.routes if isinstance(route, Route)))
    return app


class Edge(Starlette):
    """The edge's application: Starlette, with a shortcut for the API's own paths.

    Requests under a first path segment that only REST bindings use (``/v1/…``) go straight
    to the transcoder (behind CORS when it is on), skipping Starlette's error and exception
    middleware and its walk over the fixed routes: the transcoder answers every outcome,
    404 and 500 included, itself. Everything else (fixed routes, lifespan) is Starlette's.
    """

    _direct_app: ASGIApp | None = None
    _direct_segments: frozenset[str] = frozenset()
    _claimed_paths: frozenset[str] = frozenset()
    _traced: ASGIApp | None = None

    def trace(self, fixed_paths: frozenset[str]) -> None:
        """Put every request in a SERVER span (OpenTelemetry's ASGI middleware), child of its ``traceparent``.

        The span is named ``METHOD`` plus the path for the fixed routes (a bounded set); the
        transcoder renames it ``METHOD <template>`` once a binding matches. The response
        carries the trace as W3C ``traceresponse``.
        """
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
            method = str(scope.get("method", "HTTP"))
            path = str(scope.get("path", ""))
            return (f"{method} {path}" if path in fixed_paths else method), {}

        self._traced = OpenTelemetryMiddleware(
            self._dispatch, default_span_details=span_details, exclude_spans=["receive", "send"]
        )

    def direct(self, app: ASGIApp, segments: frozenset[str], claimed: frozenset[str] = frozenset()) -> None:
        """Send HTTP requests whose first path segment is in ``segments`` straight to ``app``.

        Paths in ``claimed`` (fixed routes such as ``/v1/auth/token``) still go through the routes.
        """
        self._direct_app, self._direct_segments, self._claimed_paths = app, segments, claimed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI connection (inside its span when tracing is on)."""
        if self._traced is not None:
            await self._traced(scope, receive, send)
            return
        await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._direct_app is not None
            and scope["type"] == "http"
            and _first_segment(scope["path"]) in self._direct_segments
            and scope["path"] not in self._claimed_paths
        ):
            scope["app"] = self
            await self._direct_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _first_segment(path: str) -> str:
    """``v1`` for ``/v1/agents/…`` (and for a template ``/v1/{name=agents/*}``)."""
    return path.lstrip("/").split("/", 1)[0]


def _cors_methods(catalog: Catalog | None) -> list[str]:
    standard = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    custom = sorted({b.http_method for b in catalog.bindings} - set(standard)) if catalog is not None else []
    return standard + custom
