"""The edge's gathered /metrics: every service's families merged with a service label; a down one reported."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway_rest.metrics_gather import MetricsGatherer, Scrape, ScrapeTarget, merge
from runtime.metrics_endpoint import MetricsEndpoint


def _text(name: str, value: float, *, kind: str = "counter") -> bytes:
    registry = CollectorRegistry()
    if kind == "counter":
        Counter(name, "Calls.", ["grpc_method"], registry=registry).labels("Get").inc(value)
    else:
        Gauge(name, "Calls.", ["grpc_method"], registry=registry).labels("Get").set(value)
    return generate_latest(registry)


def _samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    families = list(text_string_to_metric_families(text.decode()))
    names = [family.name for family in families]
    assert len(names) == len(set(names)), "a family appears twice"
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_services_are_scraped_merged_and_a_down_one_is_reported():
    agents = MetricsEndpoint("127.0.0.1", 0, render=lambda: _text("calls_total", 2))
    billing = MetricsEndpoint("127.0.0.1", 0, render=lambda: _text("calls_total", 5))
    ports = [await agents.start(), await billing.start()]
    targets = [
        ScrapeTarget("agents", "127.0.0.1", ports[0]),
        ScrapeTarget("billing", "127.0.0.1", ports[1]),
        ScrapeTarget("calls", "127.0.0.1", _free_port()),  # nothing listens
    ]
    try:
        text = await MetricsGatherer(lambda: _text("edge_total", 1), targets, timeout=2.0).render()
    finally:
        await agents.stop()
        await billing.stop()
    samples = _samples(text)
    assert samples[("calls_total", frozenset({("grpc_method", "Get"), ("service", "agents")}))] == 2
    assert samples[("calls_total", frozenset({("grpc_method", "Get"), ("service", "billing")}))] == 5
    assert samples[("edge_total", frozenset({("grpc_method", "Get"), ("service", "edge")}))] == 1
    assert samples[("vocelio_scrape_up", frozenset({("service", "agents")}))] == 1
    assert samples[("vocelio_scrape_up", frozenset({("service", "calls")}))] == 0
    assert ("vocelio_scrape_duration_seconds", frozenset({("service", "calls")})) in samples


def test_garbled_text_counts_as_down_and_a_clashing_type_is_dropped():
    text = merge(
        [
            Scrape("edge", _text("calls_total", 1).decode(), 0.0),
            Scrape("agents", "this is { not metrics", 0.01),
            Scrape("billing", _text("calls", 3, kind="gauge").decode(), 0.01),
        ]
    )
    samples = _samples(text)
    assert samples[("vocelio_scrape_up", frozenset({("service", "agents")}))] == 0
    assert samples[("vocelio_scrape_up", frozenset({("service", "billing")}))] == 1
    families = {f.name: f.type for f in text_string_to_metric_families(text.decode())}
    assert families["calls"] == "counter"
    assert not any(labels == frozenset({("grpc_method", "Get"), ("service", "billing")}) for _n, labels in samples)
