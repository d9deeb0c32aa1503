"""OpenTelemetry tracing for a process: set up once at start-up, flushed and shut down on exit.

The standard variables choose everything, read from the injected environment
(``configure(name, os.environ)``) or by the SDK itself:

- ``OTEL_SDK_DISABLED=true`` — no tracing at all: no provider is installed, the server
  wrapper, client interceptors, edge middleware and SQL hooks are not even added, so the
  untraced path costs nothing. ``OTEL_TRACES_SAMPLER=always_off`` means the same here.
- ``OTEL_TRACES_EXPORTER`` — ``otlp`` (OTLP/HTTP protobuf; the exporter reads its own
  ``OTEL_EXPORTER_OTLP_*`` variables), ``console``, or ``none`` (the default; comma-separated
  for several). With no exporter nothing is installed either: a span nobody receives would
  cost every call (a span per RPC, per SQL statement and per edge request, measured at a
  third of GetAgent's CPU) for trace ids that lead nowhere. Trace ids then appear in logs,
  ``traceresponse`` and ``CallerInfo`` only where tracing is configured.
- ``OTEL_SERVICE_NAME`` — defaults to ``vocelio-<process>``; ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_BSP_*`` and ``OTEL_PROPAGATORS`` are the SDK's own.

Everything else asks :func:`active` whether to trace: the answer is fixed once the process
has configured tracing, before servers, channels and engines are built.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from mesh.config import ConfigError

log = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "none")
# On exit, spans still queued get this long to leave; then they are dropped.
FLUSH_TIMEOUT_MILLIS = 5_000


class Tracing:
    """The process's tracing: its provider (``None`` when tracing is off) and its shutdown."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider

    def shutdown(self) -> None:
        """Export what is queued (bounded by :data:`FLUSH_TIMEOUT_MILLIS`), then stop the processors."""
        if self.provider is None:
            return
        if not self.provider.force_flush(FLUSH_TIMEOUT_MILLIS):
            log.warning("tracing: spans still queued after %d ms were dropped", FLUSH_TIMEOUT_MILLIS)
        self.provider.shutdown()
        self.provider = None


def exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` names (none by default).

    Raises:
        ConfigError: an unknown exporter, or an OTLP protocol other than ``http/protobuf``.

    """
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError("OTEL_TRACES_EXPORTER", f"unknown exporter {unknown[0]!r} (expected one of {EXPORTERS})")
    chosen: list[SpanExporter] = []
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(variable, "").strip()
            if protocol:
                if protocol != "http/protobuf":
                    raise ConfigError(variable, f"{protocol!r} is not supported here (use http/protobuf)")
                break
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        chosen.append(OTLPSpanExporter())
    if "console" in names:
        chosen.append(ConsoleSpanExporter())
    return chosen


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for tracing at all (not disabled, not sampled off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() != "always_off"


def configure(process: str, environ: Mapping[str, str]) -> Tracing:
    """Set up tracing for this process (once, before any server, channel or engine is built).

    Args:
        process: the process's name (a service, ``edge`` or ``mesh``); the default service name
            is ``vocelio-<process>``.
        environ: the environment (``os.environ``).

    Raises:
        ConfigError: a tracing variable has a value we cannot run with.

    """
    if not wanted(environ):
        return Tracing(None)
    chosen = exporters(environ)
    if not chosen:
        return Tracing(None)
    service_name = environ.get("OTEL_SERVICE_NAME", "").strip() or f"vocelio-{process}"
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG), read by the SDK itself.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False)
    for exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    return Tracing(provider)


def install(provider: TracerProvider, processors: tuple[SpanProcessor, ...] = ()) -> None:
    """Make ``provider`` the process's tracer provider and return trace ids in HTTP responses."""
    from opentelemetry.instrumentation.propagators import TraceResponsePropagator, set_global_response_propagator

    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    set_global_response_propagator(TraceResponsePropagator())  # type: ignore[no-untyped-call]


def active() -> bool:
    """Whether this process traces (a real tracer provider is installed)."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def current_trace_id() -> str:
    """The running span's trace id (32 hex digits), or ``""`` outside a recorded trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Run a block without instrumentation spans (health probes of the database, for instance)."""
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        detach(token)


def instrument_engine(engine: Any) -> None:
    """Trace the SQL of a SQLAlchemy engine (async engines: pass ``engine.sync_engine``), if tracing is on."""
    if not active():
        return
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    usage = metrics.get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
        name="db.client.connections.usage", unit="connections", description="connections by state"
    )
    EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]
