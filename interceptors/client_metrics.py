"""Client side: RED metrics of every outgoing call, go-grpc-prometheus style.

``grpc_client_started_total``, ``grpc_client_handled_total`` (by ``grpc_code``, the code the
call ended with, UNAVAILABLE from a breaker or DEADLINE_EXCEEDED from a spent budget
included) and ``grpc_client_handling_seconds``, labelled ``grpc_type``, ``grpc_service``,
``grpc_method``, on ``prometheus_client.REGISTRY``. ``runtime.clients.MeshClients`` puts
these interceptors first on every channel, so every stub is counted once per call, however
many retries happen below.

The label children of a method are bound on its first call and kept by path, so a call
pays one dictionary look-up and a few increments.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from interceptors.metrics import BUCKETS, split_path

_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class ClientMetrics:
    """The client collectors, registered once per registry (see :func:`client_metrics`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter("grpc_client_started_total", "RPCs started by this client.", _LABELS, registry=registry)
        self.handled = Counter(
            "grpc_client_handled_total",
            "RPCs completed by this client, by status code.",
            (*_LABELS, "grpc_code"),
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_client_handling_seconds",
            "Time from the start of an RPC to its status, on the client.",
            _LABELS,
            buckets=BUCKETS,
            registry=registry,
        )
        self._methods: dict[tuple[str, str], _MethodSeries] = {}

    def method(self, kind: str, path: str | bytes) -> _MethodSeries:
        """The bound series of one method and call type."""
        key = (kind, path.decode() if isinstance(path, bytes) else path)
        series = self._methods.get(key)
        if series is None:
            series = self._methods[key] = _MethodSeries(self, (kind, *split_path(key[1])))
        return series


class _MethodSeries:
    """One method's children: started, its histogram and its handled counters by code."""

    __slots__ = ("_codes", "_handled", "_labels", "handling", "started")

    def __init__(self, metrics: ClientMetrics, labels: tuple[str, ...]) -> None:
        self.started = metrics.started.labels(*labels)
        self.handling = metrics.handling.labels(*labels)
        self._handled = metrics.handled
        self._labels = labels
        self._codes: dict[grpc.StatusCode, Any] = {}

    def finished(self, code: grpc.StatusCode, seconds: float) -> None:
        """Record one call that ended with ``code`` after ``seconds``."""
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._handled.labels(*self._labels, code.name)
        child.inc()
        self.handling.observe(seconds)


@functools.cache
def client_metrics(registry: CollectorRegistry = REGISTRY) -> ClientMetrics:
    """The client collectors on ``registry``, created on first use (every channel in the process shares them)."""
    return ClientMetrics(registry)


class UnaryMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Counts unary calls; it waits for the call's end, then hands the finished call on."""

    def __init__(self, metrics: ClientMetrics) -> None:
        self._metrics = metrics

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Count one unary call."""
        series = self._metrics.method("unary", client_call_details.method)
        series.started.inc()
        began = time.perf_counter()
        try:
            call = await continuation(client_call_details, request)
        except grpc.aio.AioRpcError as error:
            series.finished(error.code(), time.perf_counter() - began)
            raise
        except asyncio.CancelledError:
            series.finished(grpc.StatusCode.CANCELLED, time.perf_counter() - began)
            raise
        try:
            await call
        except grpc.aio.AioRpcError as error:
            # The caller awaits the same call and gets the same error.
            series.finished(error.code(), time.perf_counter() - began)
        except asyncio.CancelledError:
            series.finished(grpc.StatusCode.CANCELLED, time.perf_counter() - began)
            raise
        else:
            series.finished(grpc.StatusCode.OK, time.perf_counter() - began)
        return call


class StreamMetricsInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Counts server-streaming calls; the status is recorded when the stream ends."""

    def __init__(self, metrics: ClientMetrics) -> None:
        self._metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Count one server-streaming call."""
        series = self._metrics.method("server_stream", client_call_details.method)
        series.started.inc()
        began = time.perf_counter()
        try:
            call = await continuation(client_call_details, request)
        except grpc.aio.AioRpcError as error:
            series.finished(error.code(), time.perf_counter() - began)
            raise
        call.add_done_callback(functools.partial(self._ended, series, began))
        return call

    def _ended(self, series: _MethodSeries, began: float, call: Any) -> None:
        seconds = time.perf_counter() - began
        # The status of a finished aio call is read with a coroutine; it is ready, so this task ends at once.
        task = asyncio.get_running_loop().create_task(_record(series, call, seconds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


async def _record(series: _MethodSeries, call: Any, seconds: float) -> None:
    code = await call.code()
    series.finished(code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN, seconds)


def client_metrics_interceptors(registry: CollectorRegistry = REGISTRY) -> list[Any]:
    """The interceptors that count unary and server-streaming calls (put them first: outermost)."""
    metrics = client_metrics(registry)
    return [UnaryMetricsInterceptor(metrics), StreamMetricsInterceptor(metrics)]
