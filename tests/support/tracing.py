"""Record the spans a test makes: an in-memory exporter on a process-wide tracer provider, removed after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.instrumentation.propagators import set_global_response_propagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.util._once import Once

from mesh.telemetry import tracing


def reset_tracing() -> None:
    """Forget the process-wide tracer provider and response propagator (tracing is off again)."""
    # OpenTelemetry sets its provider once per process; its own test utilities reset it like this.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    set_global_response_propagator(None)


@contextlib.contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Trace everything built inside the block; the finished spans collect in the exporter.

    Servers, channels, engines and edges built inside the block trace (they ask
    :func:`mesh.telemetry.tracing.active` when they are built); those built after it do not.
    """
    exporter = InMemorySpanExporter()
    # every span is kept (parent-based, so a caller's unsampled flag is still honoured), whatever OTEL_* says
    provider = TracerProvider(sampler=DEFAULT_ON, shutdown_on_exit=False)
    reset_tracing()
    tracing.install(provider, (SimpleSpanProcessor(exporter),))
    try:
        yield exporter
    finally:
        provider.shutdown()
        reset_tracing()
