"""Prometheus metrics of the edge: requests, errors by status, latency per route.

Labels use the route *template* (``GET /v1/{name=agents/*}``), never the concrete path,
so cardinality stays bounded by the contract.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

UNMATCHED = "unmatched"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EdgeMetrics:
    """The edge's collectors, in a registry of their own (one per app instance)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vocelio_edge_requests_total",
            "HTTP requests handled by the edge, by route and HTTP status.",
            ("route", "status"),
            registry=self.registry,
        )
        self.errors = Counter(
            "vocelio_edge_errors_total",
            "Requests that ended in an error, by route and gRPC code.",
            ("route", "grpc_code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "vocelio_edge_request_duration_seconds",
            "Time from request to the last byte of the response head (streams: to the first message).",
            ("route",),
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float, grpc_code: str | None) -> None:
        """Record one finished request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if grpc_code is not None and grpc_code != "OK":
            self.errors.labels(route, grpc_code).inc()

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
