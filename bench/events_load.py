"""The load shapes ``make bench-events`` drives both sides with: closed-loop writers and an open-loop pace.

Both the raw-PostgreSQL floor (``bench.events_floor``) and the events service (``bench.events_target``)
are measured with exactly these two shapes, so their figures differ only by what sits under the call:

* :func:`run_writers` — ``writers`` appenders, each with one request in flight, looping for a fixed time
  (closed loop: the figure is the throughput the system sustains at that concurrency);
* :func:`paced` — one send per ``1 / rate`` seconds on a fixed schedule, whatever the previous send is
  doing (open loop: a slow append does not slow the offered load down, so lag is not hidden by
  coordinated omission).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

Appender = Callable[[], Awaitable[int]]
"""One append request; returns how many events it appended."""


@dataclasses.dataclass(frozen=True)
class Payload:
    """The event every append writes: a declared type with its typed payload, and its stored JSON text."""

    type: str
    data_schema: str
    data: dict[str, object]
    json_text: str
    organization_id: str

    @property
    def size(self) -> int:
        """Bytes of the payload's JSON text."""
        return len(self.json_text.encode())


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclasses.dataclass(frozen=True)
class RateResult:
    """A closed-loop run: events and requests completed, over how long, and each request's latency."""

    events: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def events_per_s(self) -> float:
        """Events appended per second."""
        return self.events / self.seconds if self.seconds else 0.0


@dataclasses.dataclass(frozen=True)
class LagResult:
    """An open-loop run: how late each event reached the subscriber after its append was sent."""

    expected: int
    received: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, lags: Sequence[float], *, expected: int, rate: float) -> LagResult:
        """From the lags in seconds of the events received, ``expected`` having been sent at ``rate`` per s."""
        return cls(
            expected=expected,
            received=len(lags),
            rate=rate,
            p50_ms=1000 * percentile(lags, 0.5),
            p99_ms=1000 * percentile(lags, 0.99),
            max_ms=1000 * max(lags, default=0.0),
            mean_ms=1000 * statistics.fmean(lags) if lags else 0.0,
        )


async def run_writers(appenders: Sequence[Appender], duration: float) -> RateResult:
    """Every appender in a loop, one request in flight each, for ``duration`` seconds.

    Requests still in flight at the deadline finish and count (their events were appended); the time is
    taken until the last of them ended, so nothing is counted against a shorter window.
    """
    latencies: list[float] = []
    events = 0
    start = time.perf_counter()
    deadline = start + duration

    async def loop(append: Appender) -> None:
        nonlocal events
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            appended = await append()  # not ``events += await …``: that reads ``events`` before the await
            latencies.append(time.perf_counter() - sent)
            events += appended

    await asyncio.gather(*(loop(append) for append in appenders))
    seconds = time.perf_counter() - start
    return RateResult(
        events=events,
        requests=len(latencies),
        seconds=seconds,
        p50_ms=1000 * percentile(latencies, 0.5),
        p99_ms=1000 * percentile(latencies, 0.99),
    )


async def paced(
    send: Callable[[int], Coroutine[Any, Any, None]], rate: float, duration: float, *, in_flight: int = 64
) -> float:
    """``send(0)``, ``send(1)`` … started on a fixed schedule of ``rate`` per second for ``duration`` seconds.

    Sends run concurrently (a slow one does not delay the next) up to ``in_flight`` at once: a system that
    cannot keep up makes the schedule slip instead of piling up requests until they time out. Returns once
    every send has finished, with the rate actually achieved (sends started over the time the schedule took).
    """
    count = max(1, round(rate * duration))
    slots = asyncio.Semaphore(in_flight)
    tasks: list[asyncio.Task[None]] = []

    async def slotted(sequence: int) -> None:
        try:
            await send(sequence)
        finally:
            slots.release()

    start = time.perf_counter()
    try:
        for sequence in range(count):
            delay = start + sequence / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(slotted(sequence)))
        scheduled = time.perf_counter() - start
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return count / scheduled if scheduled > 0 else float(count)


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 10 ms for up to ``timeout`` seconds; whether it held."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
