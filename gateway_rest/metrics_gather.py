"""The edge's ``/metrics`` in front of the mesh: its own series plus every service's.

Each service's metrics port is scraped concurrently, each with a short timeout. The texts
are parsed with prometheus_client's parser and merged by family, every sample labelled
with the ``service`` it came from (``edge`` for the edge's own), so one family appears
once with one HELP and TYPE however many services expose it. A family whose TYPE
disagrees with the one already merged keeps the first and drops the other's samples
(logged). ``vocelio_scrape_up{service}`` is 1 for a service that answered and 0 for one
that did not (down, slow, garbled): a down service is reported, never a failed page.
``vocelio_scrape_duration_seconds{service}`` says how long each took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

EDGE = "edge"
_MAX_BODY = 32 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One service's metrics port."""

    service: str
    host: str
    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class Scrape:
    """The outcome of scraping one target: its text, or ``None`` when it did not answer."""

    service: str
    text: str | None
    seconds: float


class MetricsGatherer:
    """Renders the edge's series and every target's, merged."""

    def __init__(self, own: Callable[[], bytes], targets: Sequence[ScrapeTarget], timeout: float) -> None:
        self._own = own
        self.targets = tuple(targets)
        self._timeout = timeout

    async def render(self) -> bytes:
        """The merged exposition text (parsing and merging run in a worker thread, off the loop)."""
        scrapes = await asyncio.gather(*(scrape(target, self._timeout) for target in self.targets))
        own = self._own().decode()
        return await asyncio.to_thread(merge, [Scrape(EDGE, own, 0.0), *scrapes])


async def scrape(target: ScrapeTarget, timeout: float) -> Scrape:
    """``GET /metrics`` of one target, within ``timeout`` seconds."""
    began = time.perf_counter()
    try:
        text = await asyncio.wait_for(_get(target.host, target.port, "/metrics"), timeout)
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
        log.info("metrics of %s unavailable: %s", target.service, error or type(error).__name__)
        text = None
    return Scrape(target.service, text, time.perf_counter() - began)


async def _get(host: str, port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/plain\r\n\r\n".encode("latin-1"))
        await writer.drain()
        response = await reader.read(_MAX_BODY)
        while chunk := await reader.read(_MAX_BODY):
            response += chunk
            if len(response) > _MAX_BODY:
                raise ValueError("metrics response too large")
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    status = status_line.split(b" ")
    if len(status) < 2 or status[1] != b"200":
        raise ValueError(f"answered {status_line.decode('latin-1', 'replace')!r}")
    return body.decode()


def merge(scrapes: Iterable[Scrape]) -> bytes:
    """One exposition text of every scrape's families, each sample labelled with its ``service``."""
    families: dict[str, Metric] = {}
    up = GaugeMetricFamily("vocelio_scrape_up", "1 when the service's metrics were read, else 0.", labels=["service"])
    took = GaugeMetricFamily(
        "vocelio_scrape_duration_seconds", "Time the edge took to read the service's metrics.", labels=["service"]
    )
    for result in scrapes:
        parsed = _parse(result) if result.text is not None else None
        if result.service != EDGE:
            up.add_metric([result.service], 0.0 if parsed is None else 1.0)
            took.add_metric([result.service], result.seconds)
        for family in parsed or ():
            _add(families, family, result.service)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up, took]))
    return generate_latest(registry)


def _parse(result: Scrape) -> list[Metric] | None:
    try:
        return list(text_string_to_metric_families(result.text or ""))
    except ValueError as error:
        log.warning("metrics of %s do not parse: %s", result.service, error)
        return None


def _add(families: dict[str, Metric], family: Metric, service: str) -> None:
    merged = families.get(family.name)
    if merged is None:
        merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
    elif merged.type != family.type:
        log.warning("metric %s is a %s at %s, not a %s; dropped", family.name, family.type, service, merged.type)
        return
    for sample in family.samples:
        labels = {"service": service, **sample.labels} if "service" not in sample.labels else sample.labels
        merged.samples.append(sample._replace(labels=labels))


class _Families:
    """A collector answering fixed families (what ``generate_latest`` renders)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families
