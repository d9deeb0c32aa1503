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

Every label child a call touches is bound when the method is composed (the code's child
on the first call that ends with it), so a call pays for a few counter increments and one
histogram observation, not for ``labels()`` look-ups.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from interceptors.chain import Behaviour, WrapperInterceptor
from interceptors.outcome import final_code

# Seconds; from a fast point read to a slow export, like the edge's.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class ServerMetrics:
    """The server's collectors, registered once per registry (see :func:`server_metrics`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS, registry=registry)
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by the status code the client saw.",
            (*_LABELS, "grpc_code"),
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, on the server.",
            _LABELS,
            buckets=BUCKETS,
            registry=registry,
        )
        # In flight is a plain number per method, read when collected: two gauge updates
        # (each takes prometheus_client's lock) would cost more than the rest of the wrapper.
        self._running: dict[tuple[str, ...], _Running] = {}
        registry.register(_InFlightCollector(self._running))
        self.msg_sent = Counter(
            "grpc_server_msg_sent_total", "Stream messages sent by the server.", _LABELS, registry=registry
        )

    def measured(self, path: str, behaviour: Behaviour) -> Behaviour:
        """The behaviour with its start, status, duration and messages counted (the outermost wrapper)."""
        labels = (grpc_type(path, behaviour), *split_path(path))
        started = self.started.labels(*labels)
        in_flight = self._running.setdefault(labels, _Running())
        handling = self.handling.labels(*labels)
        handled = _CodeCounters(self.handled, labels)
        clock = time.perf_counter

        if inspect.isasyncgenfunction(behaviour):
            sent = self.msg_sent.labels(*labels)

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                started.inc()
                in_flight.count += 1
                began = clock()
                code = grpc.StatusCode.OK
                try:
                    async for response in behaviour(request, context):
                        yield response
                        sent.inc()
                except BaseException as error:
                    code = final_code(context, error)
                    raise
                else:
                    code = final_code(context)
                finally:
                    in_flight.count -= 1
                    handling.observe(clock() - began)
                    handled.inc(code)

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started.inc()
            in_flight.count += 1
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
                in_flight.count -= 1
                handling.observe(clock() - began)
                handled.inc(code)
            return response

        return call


class _Running:
    """How many calls of one method are running (changed on the loop's thread only)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class _InFlightCollector:
    """``grpc_server_in_flight``, from the per-method numbers."""

    def __init__(self, running: dict[tuple[str, ...], _Running]) -> None:
        self._running = running

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("grpc_server_in_flight", "RPCs running on the server now.", labels=_LABELS)]

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily("grpc_server_in_flight", "RPCs running on the server now.", labels=_LABELS)
        for labels, running in list(self._running.items()):
            family.add_metric(labels, running.count)
        return [family]


class _CodeCounters:
    """One method's ``grpc_server_handled_total`` children by code; OK bound at once, others on first use."""

    __slots__ = ("_children", "_counter", "_labels")

    def __init__(self, counter: Counter, labels: tuple[str, ...]) -> None:
        self._counter = counter
        self._labels = labels
        self._children: dict[grpc.StatusCode, Any] = {grpc.StatusCode.OK: counter.labels(*labels, "OK")}

    def inc(self, code: grpc.StatusCode) -> None:
        child = self._children.get(code)
        if child is None:
            child = self._children[code] = self._counter.labels(*self._labels, code.name)
        child.inc()


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
