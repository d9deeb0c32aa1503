"""Tracing set-up from the standard OTEL_* variables: exporters, disabling, service name, flush on shutdown."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from mesh.config import ConfigError
from mesh.telemetry import tracing
from tests.support.tracing import reset_tracing


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    reset_tracing()
    yield
    reset_tracing()


@pytest.mark.parametrize(
    "environ", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_SDK_DISABLED": "TRUE"}, {"OTEL_TRACES_SAMPLER": "always_off"}]
)
def test_disabled_or_sampled_off_installs_nothing(environ):
    traces = tracing.configure("agents", {"OTEL_TRACES_EXPORTER": "console", **environ})
    assert traces.provider is None
    assert not tracing.active()
    traces.shutdown()


@pytest.mark.parametrize("environ", [{}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_with_no_exporter_nothing_is_installed(environ):
    traces = tracing.configure("agents", environ)
    assert traces.provider is None
    assert not tracing.active()
    traces.shutdown()


def test_with_an_exporter_spans_are_made_and_carry_the_service_name():
    traces = tracing.configure("agents", {"OTEL_TRACES_EXPORTER": "console"})
    try:
        assert tracing.active()
        assert traces.provider is not None
        assert traces.provider.resource.attributes["service.name"] == "vocelio-agents"
        with trace.get_tracer("test").start_as_current_span("work"):
            assert len(tracing.current_trace_id()) == 32
        assert tracing.current_trace_id() == ""
    finally:
        traces.shutdown()


def test_the_service_name_follows_otel_service_name():
    traces = tracing.configure("agents", {"OTEL_SERVICE_NAME": "agents-eu-1", "OTEL_TRACES_EXPORTER": "console"})
    assert traces.provider is not None
    assert traces.provider.resource.attributes["service.name"] == "agents-eu-1"
    traces.shutdown()


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_the_variable(environ, variable):
    with pytest.raises(ConfigError) as caught:
        tracing.configure("agents", environ)
    assert caught.value.variable == variable
    assert not tracing.active()


def test_exporters_are_chosen_by_otel_traces_exporter():
    assert tracing.exporters({}) == []
    assert tracing.exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    [console] = tracing.exporters({"OTEL_TRACES_EXPORTER": " Console "})
    assert isinstance(console, ConsoleSpanExporter)
    both = tracing.exporters({"OTEL_TRACES_EXPORTER": "otlp,console"})
    assert [type(e).__name__ for e in both] == ["OTLPSpanExporter", "ConsoleSpanExporter"]


class _Sink(http.server.BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_spans_reach_the_collector_when_the_process_shuts_down(monkeypatch):
    received: list[bytes] = []
    handler = type("Sink", (_Sink,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The OTLP exporter reads its own variables from the process environment.
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
        traces = tracing.configure("agents", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "always_on"})
        with trace.get_tracer("test").start_as_current_span("exported work"):
            pass
        traces.shutdown()  # the batch leaves now, not after the processor's schedule delay
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(b"".join(received))
    [resource_spans] = request.resource_spans
    names = [span.name for scope in resource_spans.scope_spans for span in scope.spans]
    assert names == ["exported work"]
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "vocelio-agents"


def test_untraced_blocks_suppress_instrumentation():
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    with tracing.untraced():
        assert not is_instrumentation_enabled()
    assert is_instrumentation_enabled()


def _decision(sampler, trace_id: int, parent_sampled: bool | None = None) -> Decision:
    """What ``sampler`` decides for a span of ``trace_id``: a root, or the child of a remote parent."""
    context = None
    if parent_sampled is not None:
        flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
        parent = SpanContext(trace_id, 0x1234, is_remote=True, trace_flags=flags)
        context = set_span_in_context(NonRecordingSpan(parent))
    decision: Decision = sampler.should_sample(context, trace_id, "call").decision
    return decision


def test_the_default_sampler_is_parent_based_at_the_vocelio_ratio():
    sampler = tracing.sampler({})
    assert isinstance(sampler, ParentBasedTraceIdRatio)
    assert tracing.DEFAULT_SAMPLE_RATIO == 0.1
    # a root is sampled by its trace id: below ratio × 2^64 in its low 64 bits (TraceIdRatioBased)
    low, high = 1, (1 << 64) - 1
    assert _decision(sampler, low) is Decision.RECORD_AND_SAMPLE
    assert _decision(sampler, high) is Decision.DROP
    # the caller's sampled flag is always honoured, whatever the trace id says
    assert _decision(sampler, high, parent_sampled=True) is Decision.RECORD_AND_SAMPLE
    assert _decision(sampler, low, parent_sampled=False) is Decision.DROP


def test_the_default_ratio_follows_vocelio_trace_sample_ratio():
    assert _decision(tracing.sampler({"VOCELIO_TRACE_SAMPLE_RATIO": "1"}), (1 << 64) - 1) is Decision.RECORD_AND_SAMPLE
    assert _decision(tracing.sampler({"VOCELIO_TRACE_SAMPLE_RATIO": "0"}), 1) is Decision.DROP
    half = tracing.sampler({"VOCELIO_TRACE_SAMPLE_RATIO": "0.5"})
    assert _decision(half, (1 << 62)) is Decision.RECORD_AND_SAMPLE
    assert _decision(half, (1 << 63) + 1) is Decision.DROP


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("always_on", ALWAYS_ON),
        ("always_off", ALWAYS_OFF),
        ("parentbased_always_on", DEFAULT_ON),
        (" ParentBased_Always_Off ", DEFAULT_OFF),
    ],
)
def test_otel_traces_sampler_overrides_the_default(name, expected):
    # the Vocelio ratio is ignored once a standard sampler is named
    assert tracing.sampler({"OTEL_TRACES_SAMPLER": name, "VOCELIO_TRACE_SAMPLE_RATIO": "0.5"}) is expected


def test_the_standard_ratio_samplers_read_otel_traces_sampler_arg():
    ratio = tracing.sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.25
    parent = tracing.sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert isinstance(parent, ParentBased) and _decision(parent, (1 << 64) - 1) is Decision.DROP
    # no argument: the specification's default ratio, 1.0 (not Vocelio's)
    everything = tracing.sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"})
    assert _decision(everything, (1 << 64) - 1) is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"VOCELIO_TRACE_SAMPLE_RATIO": "1.5"}, "VOCELIO_TRACE_SAMPLE_RATIO"),
        ({"VOCELIO_TRACE_SAMPLE_RATIO": "-0.1"}, "VOCELIO_TRACE_SAMPLE_RATIO"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY"),
    ],
)
def test_a_bad_sampler_or_batch_setting_is_a_configuration_error(environ, variable):
    with pytest.raises(ConfigError) as caught:
        tracing.configure("agents", {"OTEL_TRACES_EXPORTER": "console", **environ})
    assert caught.value.variable == variable
    assert not tracing.active()


def test_a_configured_provider_samples_by_default_and_batches_in_large_batches():
    traces = tracing.configure("agents", {"OTEL_TRACES_EXPORTER": "console"})
    try:
        assert traces.provider is not None
        assert isinstance(traces.provider.sampler, ParentBasedTraceIdRatio)
        [processor] = traces.provider._active_span_processor._span_processors
        assert isinstance(processor, BatchSpanProcessor)
    finally:
        traces.shutdown()
    assert tracing.batch_settings({}) == tracing.BATCH_DEFAULTS
    assert tracing.batch_settings({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100"})["max_export_batch_size"] == 100
    # a batch never exceeds the queue
    assert tracing.batch_settings({"OTEL_BSP_MAX_QUEUE_SIZE": "64"})["max_export_batch_size"] == 64
