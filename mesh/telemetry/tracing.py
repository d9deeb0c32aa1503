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
  ``OTEL_BSP_*`` and ``OTEL_PROPAGATORS`` are the SDK's own.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` — the standard samplers, read from the
  injected environment. **Unset, Vocelio's default is ``parentbased_traceidratio`` at
  ``VOCELIO_TRACE_SAMPLE_RATIO`` (0.1)**, not the SDK's ``parentbased_always_on``: a sampled
  span costs a server ~100–150 µs of CPU (making it, then encoding it for OTLP in pure Python,
  on a thread that holds the GIL), which at 100 % was more than half of a trivial call. The
  decision is taken once, at the root of a trace (the first traced hop, the edge for REST
  calls), from the trace id; every later hop follows the caller's ``sampled`` flag
  (``ParentBased``), so a trace is kept whole or not at all and a caller that samples (or a
  ``traceparent`` with ``-01``) is always honoured. An unsampled call still gets a valid
  trace id (in log lines, ``traceresponse``, ``CallerInfo``) and passes the decision on; its
  spans are non-recording, and the mesh's own wrappers skip their attribute work for them.
  Errors are not traced more often than other calls: head sampling decides before the call
  has an outcome, and keeping every failed call would need tail sampling (a collector such
  as the OpenTelemetry Collector's ``tail_sampling`` processor, with ``always_on`` here).
- ``OTEL_BSP_*`` unset, spans are exported in batches of up to 2,048 every 5 s from a queue
  of 8,192 (:data:`BATCH_DEFAULTS`): fewer, larger export requests than the SDK's 512 each
  make the exporter thread wake (and take the GIL) less often.

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
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)

from mesh.config import ConfigError

log = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "none")
# On exit, spans still queued get this long to leave; then they are dropped.
FLUSH_TIMEOUT_MILLIS = 5_000
DEFAULT_SAMPLE_RATIO = 0.1
"""The fraction of traces sampled when ``OTEL_TRACES_SAMPLER`` is unset (``VOCELIO_TRACE_SAMPLE_RATIO``)."""
# The batch span processor's settings when the OTEL_BSP_* variables do not say (see the module docstring).
BATCH_DEFAULTS = {"max_queue_size": 8192, "max_export_batch_size": 2048, "schedule_delay_millis": 5000}
_BATCH_VARIABLES = {
    "max_queue_size": "OTEL_BSP_MAX_QUEUE_SIZE",
    "max_export_batch_size": "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "schedule_delay_millis": "OTEL_BSP_SCHEDULE_DELAY",
}
_SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
}
_RATIO_SAMPLERS: dict[str, type[Sampler]] = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}


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


def _ratio(environ: Mapping[str, str], variable: str, default: float) -> float:
    raw = environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(variable, f"expected a number between 0 and 1, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(variable, f"expected a number between 0 and 1, got {raw!r}")
    return value


def sampler(environ: Mapping[str, str]) -> Sampler:
    """The head sampler: ``OTEL_TRACES_SAMPLER(_ARG)`` if set, else ``parentbased_traceidratio`` at the default.

    The default ratio is ``VOCELIO_TRACE_SAMPLE_RATIO`` (:data:`DEFAULT_SAMPLE_RATIO`); a standard
    ratio sampler without ``OTEL_TRACES_SAMPLER_ARG`` samples everything, as the specification says.

    Raises:
        ConfigError: an unknown sampler, or a ratio that is not a number in [0, 1].

    """
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return ParentBasedTraceIdRatio(_ratio(environ, "VOCELIO_TRACE_SAMPLE_RATIO", DEFAULT_SAMPLE_RATIO))
    if name in _SAMPLERS:
        return _SAMPLERS[name]
    if name in _RATIO_SAMPLERS:
        return _RATIO_SAMPLERS[name](_ratio(environ, "OTEL_TRACES_SAMPLER_ARG", 1.0))  # type: ignore[call-arg]
    known = (*_SAMPLERS, *_RATIO_SAMPLERS)
    raise ConfigError("OTEL_TRACES_SAMPLER", f"unknown sampler {name!r} (expected one of {known})")


def batch_settings(environ: Mapping[str, str]) -> dict[str, int]:
    """The batch span processor's settings: :data:`BATCH_DEFAULTS` where no ``OTEL_BSP_*`` variable is set.

    Raises:
        ConfigError: a set ``OTEL_BSP_*`` variable that is not a positive integer.

    """
    settings = dict(BATCH_DEFAULTS)
    for key, variable in _BATCH_VARIABLES.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            settings[key] = int(raw)
        except ValueError:
            raise ConfigError(variable, f"expected a positive integer, got {raw!r}") from None
        if settings[key] <= 0:
            raise ConfigError(variable, f"expected a positive integer, got {raw!r}")
    if settings["max_export_batch_size"] > settings["max_queue_size"]:
        settings["max_export_batch_size"] = settings["max_queue_size"]
    return settings


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
    provider = TracerProvider(
        sampler=sampler(environ), resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False
    )
    batching = batch_settings(environ)
    for exporter in chosen:
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=batching["max_queue_size"],
                schedule_delay_millis=batching["schedule_delay_millis"],
                max_export_batch_size=batching["max_export_batch_size"],
            )
        )
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
    """Trace the SQL of a SQLAlchemy engine (async engines: pass ``engine.sync_engine``), if tracing is on.

    A statement run inside a call that is not sampled is left alone altogether: under the
    parent-based samplers its span could only be non-recording, and the instrumentation would
    still look up the connection's attributes and name the operation for it. Statements outside
    any trace (start-up, background work) are sampled as roots are.
    """
    if not active():
        return
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    class _SampledOnly(EngineTracer):
        def _before_cur_exec(
            self, conn: Any, cursor: Any, statement: Any, params: Any, context: Any, executemany: Any
        ) -> tuple[Any, Any]:
            parent = trace.get_current_span().get_span_context()
            if parent.is_valid and not parent.trace_flags.sampled:
                return statement, params
            result: tuple[Any, Any] = super()._before_cur_exec(  # type: ignore[no-untyped-call]
                conn, cursor, statement, params, context, executemany
            )
            return result

    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    usage = metrics.get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
        name="db.client.connections.usage", unit="connections", description="connections by state"
    )
    _SampledOnly(tracer, engine, usage)  # type: ignore[no-untyped-call]
