"""Server side: RED metrics per method, in the names go-grpc-prometheus dashboards expect.

``grpc_server_started_total``, ``grpc_server_handled_total`` (by ``grpc_code``),
``grpc_server_handling_seconds`` (a histogram), ``grpc_server_in_flight`` and, for
server streams, ``grpc_server_msg_sent_total``; labels ``grpc_type``, ``grpc_service``,
``grpc_method``. They live on ``prometheus_client.REGISTRY`` (the process default), beside
the process collectors and every other concern's series.

The code recorded is the one the client sees (``interceptors.outcome.final_code``, shared with
the RPC log line and the server span). This wrapper is the outermost, so the rich statuses
``interceptors.errors`` aborts with, authentication's UNAUTHENTICATED and the drain's
UNAVAILABLE all reach it as an abort whose code the context holds; a cancelled handler is
CANCELLED, or DEADLINE_EXCEEDED once the call's deadline has passed.

Each method's numbers are one plain record bound when the method is composed, read by a
collector when ``/metrics`` is scraped: a call pays for a few integer increments and a
``bisect`` into the buckets, not for ``labels()`` look-ups or prometheus_client's per-child
locks. The records are changed on the event loop's thread only.
"""

from __future__ import annotations

import bisect
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

from interceptors.chain import Behaviour, WrapperInterceptor
from interceptors.outcome import final_code

# Seconds; from a fast point read to a slow export, like the edge's.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class ServerMetrics:
    """The server's collectors, registered once per registry (see :func:`server_metrics`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # One plain record per method, changed on the loop's thread and read when collected: a
        # prometheus_client child takes a lock per increment and walks the buckets in Python, which
        # cost more than the rest of the wrapper (``make bench-metrics``).
        self._methods: dict[tuple[str, ...], _MethodRecord] = {}
        registry.register(_ServerCollector(self._methods))

    def record(self, labels: tuple[str, ...], *, stream: bool = False) -> _MethodRecord:
        """The record of the method with ``labels`` (``grpc_type``, ``grpc_service``, ``grpc_method``)."""
        record = self._methods.get(labels)
        if record is None:
            record = self._methods[labels] = _MethodRecord()
        if stream:
            record.streams = True
        return record

    def measured(self, path: str, behaviour: Behaviour) -> Behaviour:
        """The behaviour with its start, status, duration and messages counted (the outermost wrapper)."""
        streams = inspect.isasyncgenfunction(behaviour)
        record = self.record((grpc_type(path, behaviour), *split_path(path)), stream=streams)
        handled = record.handled
        buckets = record.buckets
        clock = time.perf_counter

        if streams:

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                record.started += 1
                record.in_flight += 1
                began = clock()
                code = grpc.StatusCode.OK
                try:
                    async for response in behaviour(request, context):
                        yield response
                        record.sent += 1
                except BaseException as error:
                    code = final_code(context, error)
                    raise
                else:
                    code = final_code(context)
                finally:
                    record.in_flight -= 1
                    elapsed = clock() - began
                    record.seconds += elapsed
                    buckets[bisect.bisect_left(BUCKETS, elapsed)] += 1
                    handled[code] = handled.get(code, 0) + 1

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            record.started += 1
            record.in_flight += 1
            began = clock()
            code = grpc.StatusCode.OK
            try:
                response = await behaviour(request, context)
            except BaseException as error:
                code = final_code(context, error)
                raise
            else:
                code = final_code(context)
            finally:
                record.in_flight -= 1
                elapsed = clock() - began
                record.seconds += elapsed
                # le semantics: a duration equal to a bound belongs to that bound's bucket
                buckets[bisect.bisect_left(BUCKETS, elapsed)] += 1
                handled[code] = handled.get(code, 0) + 1
            return response

        return call


class _MethodRecord:
    """One method's counts (changed on the loop's thread only, read by the collector)."""

    __slots__ = ("buckets", "created", "handled", "in_flight", "seconds", "sent", "started", "streams")

    def __init__(self) -> None:
        self.created = time.time()
        self.started = 0
        self.in_flight = 0
        # by code; OK from the start, so the series is there before the first call
        self.handled: dict[grpc.StatusCode, int] = {grpc.StatusCode.OK: 0}
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket (not cumulative); the last is +Inf
        self.seconds = 0.0
        self.sent = 0
        self.streams = False


_HANDLING_CREATED = "grpc_server_handling_seconds_created"
_BOUNDS = (*(repr(float(bound)) for bound in BUCKETS), "+Inf")  # the ``le`` values prometheus_client writes


class _ServerCollector:
    """The ``grpc_server_*`` families, from the per-method records."""

    def __init__(self, methods: dict[tuple[str, ...], _MethodRecord]) -> None:
        self._methods = methods

    def describe(self) -> list[Metric]:
        return self._families()

    def collect(self) -> list[Metric]:
        return self._families(list(self._methods.items()))

    @staticmethod
    def _families(methods: list[tuple[tuple[str, ...], _MethodRecord]] | None = None) -> list[Metric]:
        started = CounterMetricFamily("grpc_server_started", "RPCs started on the server.", labels=_LABELS)
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, by the status code the client saw.",
            labels=(*_LABELS, "grpc_code"),
        )
        handling = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, on the server.",
            labels=_LABELS,
        )
        in_flight = GaugeMetricFamily("grpc_server_in_flight", "RPCs running on the server now.", labels=_LABELS)
        sent = CounterMetricFamily("grpc_server_msg_sent", "Stream messages sent by the server.", labels=_LABELS)
        for labels, record in methods or ():
            started.add_metric(labels, record.started, created=record.created)
            for code, count in list(record.handled.items()):
                handled.add_metric((*labels, code.name), count, created=record.created)
            cumulative, buckets = 0, []
            for bound, count in zip(_BOUNDS, list(record.buckets), strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            handling.add_metric(labels, buckets, record.seconds)
            handling.samples.append(Sample(_HANDLING_CREATED, dict(zip(_LABELS, labels, strict=True)), record.created))
            in_flight.add_metric(labels, record.in_flight)
            if record.streams:
                sent.add_metric(labels, record.sent, created=record.created)
        return [started, handled, handling, in_flight, sent]


@functools.cache
def server_metrics(registry: CollectorRegistry = REGISTRY) -> ServerMetrics:
    """The server collectors on ``registry``, created on first use (every server in the process shares them)."""
    return ServerMetrics(registry)


def measured(path: str, behaviour: Behaviour) -> Behaviour:
    """:meth:`ServerMetrics.measured` on the process registry: the wrapper ``runtime.server`` composes."""
    return server_metrics().measured(path, behaviour)


def split_path(path: str) -> tuple[str, str]:
    """``("vocelio.agents.v1.AgentsService", "GetAgent")`` for ``/vocelio.agents.v1.AgentsService/GetAgent``."""
    service, _, method = path.lstrip("/").rpartition("/")
    return service, method


def grpc_type(path: str, behaviour: Behaviour) -> str:
    """``unary``, ``client_stream``, ``server_stream`` or ``bidi_stream``, from the method's descriptor.

    A method whose descriptor is not in the default pool is judged by its behaviour's shape
    (an async generator streams responses); client streaming cannot be told from that.
    """
    service, method = split_path(path)
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(method)
    except KeyError:
        descriptor = None
    if descriptor is None:
        return "server_stream" if inspect.isasyncgenfunction(behaviour) else "unary"
    client, server = descriptor.client_streaming, descriptor.server_streaming
    return {(False, False): "unary", (True, False): "client_stream", (False, True): "server_stream"}.get(
        (client, server), "bidi_stream"
    )


class MetricsInterceptor(WrapperInterceptor):
    """:func:`measured` as a per-call interceptor (the outermost), for servers built with interceptors."""

    def __init__(self, wrap: Callable[[str, Behaviour], Behaviour] = measured) -> None:
        super().__init__(wrap)
