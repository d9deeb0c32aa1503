"""Rules of API request logs and usage buckets, without I/O.

Usage is counted per key and UTC hour when requests are recorded; daily buckets add up
24 hours. Latencies go into a fixed histogram (:data:`LATENCY_BOUNDS_MS`), so medians
and 95th percentiles of any bucket come from merged histograms, interpolated within the
bucket that holds the rank — accurate to the histogram's resolution, and cheap to keep.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import enum
import math
from collections.abc import Iterable, Sequence

from mesh.errors import InvalidArgument
from vocelio.common.v1 import usage_pb2

LOG_RETENTION = datetime.timedelta(days=30)
USAGE_RETENTION = datetime.timedelta(days=400)
MAX_BATCH = 500
# Upper bounds of the latency histogram buckets, in milliseconds; one more bucket holds the rest.
LATENCY_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000)
_FUTURE_TOLERANCE = datetime.timedelta(minutes=5)


class Granularity(enum.Enum):
    """Bucket width, with the longest range it may cover."""

    HOUR = (datetime.timedelta(hours=1), datetime.timedelta(days=7))
    DAY = (datetime.timedelta(days=1), datetime.timedelta(days=90))

    @property
    def width(self) -> datetime.timedelta:
        """The width of one bucket."""
        return self.value[0]

    @property
    def longest_range(self) -> datetime.timedelta:
        """The longest range a query may ask for."""
        return self.value[1]

    def floor(self, moment: datetime.datetime) -> datetime.datetime:
        """The start of the bucket holding ``moment`` (UTC)."""
        moment = moment.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
        return moment.replace(hour=0) if self is Granularity.DAY else moment


def granularity_of(value: int) -> Granularity:
    """The bucket width a request's ``vocelio.common.v1.UsageGranularity`` asks for.

    Unset means DAY; the shared enum's other widths (MONTH, YEAR, ALL_TIME) are billing's.

    Raises:
        InvalidArgument: a width API usage does not offer.

    """
    if value == usage_pb2.USAGE_GRANULARITY_HOUR:
        return Granularity.HOUR
    if value in (usage_pb2.USAGE_GRANULARITY_UNSPECIFIED, usage_pb2.USAGE_GRANULARITY_DAY):
        return Granularity.DAY
    name = usage_pb2.UsageGranularity.Name(value) if value in usage_pb2.UsageGranularity.values() else str(value)
    raise InvalidArgument(
        "granularity must be USAGE_GRANULARITY_HOUR or USAGE_GRANULARITY_DAY",
        {"granularity": f"{name} is not offered for API usage"},
    )


@dataclasses.dataclass(slots=True)
class Counters:
    """Traffic of one key in one bucket."""

    request_count: int = 0
    client_error_count: int = 0
    server_error_count: int = 0
    throttled_count: int = 0
    histogram: list[int] = dataclasses.field(default_factory=lambda: empty_histogram())

    def add_request(self, http_status: int, grpc_code: str, latency: datetime.timedelta) -> None:
        """Count one request."""
        self.request_count += 1
        outcome = classify(http_status, grpc_code)
        if outcome == "throttled":
            self.throttled_count += 1
        elif outcome == "client_error":
            self.client_error_count += 1
        elif outcome == "server_error":
            self.server_error_count += 1
        self.histogram[latency_bucket(latency)] += 1

    def merge(self, other: Counters) -> None:
        """Add another bucket's traffic to this one."""
        self.request_count += other.request_count
        self.client_error_count += other.client_error_count
        self.server_error_count += other.server_error_count
        self.throttled_count += other.throttled_count
        self.histogram = merge_histograms(self.histogram, other.histogram)


def classify(http_status: int, grpc_code: str) -> str:
    """``throttled`` (429 / RESOURCE_EXHAUSTED), ``client_error`` (other 4xx), ``server_error`` (5xx) or ``ok``."""
    if http_status == 429 or grpc_code == "RESOURCE_EXHAUSTED":
        return "throttled"
    if 400 <= http_status < 500:
        return "client_error"
    if http_status >= 500:
        return "server_error"
    return "ok"


def empty_histogram() -> list[int]:
    """A histogram with no requests."""
    return [0] * (len(LATENCY_BOUNDS_MS) + 1)


def latency_bucket(latency: datetime.timedelta) -> int:
    """The histogram bucket of a latency."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency / datetime.timedelta(milliseconds=1))


def merge_histograms(first: Sequence[int], second: Sequence[int]) -> list[int]:
    """Bucket-wise sum; a short (older) histogram counts as zeros."""
    size = max(len(first), len(second), len(LATENCY_BOUNDS_MS) + 1)
    padded = [list(first) + [0] * (size - len(first)), list(second) + [0] * (size - len(second))]
    return [a + b for a, b in zip(*padded, strict=True)]


def percentile(histogram: Sequence[int], fraction: float) -> datetime.timedelta:
    """The latency below which ``fraction`` of the requests fall (interpolated within its bucket)."""
    total = sum(histogram)
    if total == 0:
        return datetime.timedelta(0)
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            lower = 0 if index == 0 else LATENCY_BOUNDS_MS[index - 1]
            if index >= len(LATENCY_BOUNDS_MS):
                return datetime.timedelta(milliseconds=LATENCY_BOUNDS_MS[-1])
            upper = LATENCY_BOUNDS_MS[index]
            position = (rank - seen) / count
            return datetime.timedelta(milliseconds=lower + (upper - lower) * position)
        seen += count
    return datetime.timedelta(milliseconds=LATENCY_BOUNDS_MS[-1])  # pragma: no cover - ranks never exceed total


def usage_range(
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    granularity: Granularity,
    now: datetime.datetime,
) -> tuple[datetime.datetime, datetime.datetime]:
    """The aligned start and the end of a usage query.

    Raises:
        InvalidArgument: no start, an end before the start, or a range too long for the granularity.

    """
    if start is None:
        raise InvalidArgument("start_time is required", {"start_time": "required"})
    end = now if end is None else end
    aligned = granularity.floor(start)
    if end <= aligned:
        raise InvalidArgument("end_time must be after start_time", {"end_time": "after start_time"})
    if end - aligned > granularity.longest_range:
        days = granularity.longest_range.days
        raise InvalidArgument(
            f"{granularity.name} buckets cover at most {days} days",
            {"start_time": f"at most {days} days before end_time"},
        )
    return aligned, end


KeyRef = tuple[str, str]
"""A key as (organization id, key id)."""


def group_buckets(
    hours: Iterable[tuple[KeyRef, datetime.datetime, Counters]], granularity: Granularity
) -> list[tuple[datetime.datetime, KeyRef, Counters]]:
    """Hourly counters (key, hour, counters) as buckets of the granularity, oldest first, then by key."""
    buckets: dict[tuple[datetime.datetime, KeyRef], Counters] = {}
    for key, hour, counters in hours:
        slot = (granularity.floor(hour), key)
        bucket = buckets.setdefault(slot, Counters())
        bucket.merge(counters)
    return [(start, key, counters) for (start, key), counters in sorted(buckets.items())]


def validate_log_time(request_time: datetime.datetime | None, now: datetime.datetime, field: str) -> datetime.datetime:
    """The time of a reported request: set, within the last 30 days, not in the future.

    Raises:
        InvalidArgument: unset or out of that window.

    """
    if request_time is None:
        raise InvalidArgument("request_time is required", {field: "required"})
    if request_time < now - LOG_RETENTION or request_time > now + _FUTURE_TOLERANCE:
        raise InvalidArgument("request_time is out of range", {field: "within the last 30 days"})
    return request_time
