"""Prometheus metrics of the edge: requests, errors by status, latency per route.

Labels: ``method`` (the HTTP method), ``route`` (the path *template*,
``/v1/{name=agents/*}``, never the concrete path) and ``grpc_method`` (the
``/package.Service/Method`` the route calls), so cardinality stays bounded by the
contract. A request no route matches is ``route="unmatched"``, and a method outside
the HTTP methods the contract uses is ``method="other"``.

The edge may run several worker processes. Then ``PROMETHEUS_MULTIPROC_DIR`` is set in
their environment (prometheus_client keeps every value in files there, per process) and
:meth:`EdgeMetrics.render` sums the workers' files with ``MultiProcessCollector``;
process collectors describe one process only and are left out then. Without it, the
render is this edge's registry plus the process registry (``process_*``, ``python_*`` and,
in an all-in-one process, every service's series).
"""

from __future__ import annotations

import pathlib

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

UNMATCHED = "unmatched"
OTHER_METHOD = "other"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EdgeMetrics:
    """The edge's collectors, in a registry of their own (one per app instance)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, *, multiprocess_dir: pathlib.Path | None = None, known_methods: frozenset[str] = _KNOWN_METHODS
    ) -> None:
        """Create the collectors.

        Args:
            multiprocess_dir: ``PROMETHEUS_MULTIPROC_DIR`` when the edge runs several
                workers (the same value prometheus_client read at import).
            known_methods: HTTP methods counted under their own name (the contract's
                custom methods too); any other is ``other``.

        """
        self.multiprocess_dir = multiprocess_dir
        self._known_methods = known_methods | _KNOWN_METHODS
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vocelio_edge_requests_total",
            "HTTP requests handled by the edge, by HTTP method, route, gRPC method and HTTP status.",
            ("method", "route", "grpc_method", "status"),
            registry=self.registry,
        )
        self.errors = Counter(
            "vocelio_edge_errors_total",
            "Requests that ended in an error, by HTTP method, route, gRPC method and gRPC code.",
            ("method", "route", "grpc_method", "grpc_code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "vocelio_edge_request_duration_seconds",
            "Time from request to the last byte of the response head (streams: to the first message).",
            ("method", "route", "grpc_method"),
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def observe(
        self, method: str, route: str, grpc_method: str, status: int, seconds: float, grpc_code: str | None
    ) -> None:
        """Record one finished request (``grpc_method`` is ``""`` when no gRPC method was called)."""
        method = method if method in self._known_methods else OTHER_METHOD
        self.requests.labels(method, route, grpc_method, str(status)).inc()
        self.latency.labels(method, route, grpc_method).observe(seconds)
        if grpc_code is not None and grpc_code != "OK":
            self.errors.labels(method, route, grpc_method, grpc_code).inc()

    def render(self) -> bytes:
        """The exposition text: every worker's series summed, or this process's."""
        if self.multiprocess_dir is not None:
            workers = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(workers, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
            return generate_latest(workers)
        return generate_latest(self.registry) + generate_latest(REGISTRY)
