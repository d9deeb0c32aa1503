"""Usage buckets and percentiles, without network or database."""

from __future__ import annotations

import datetime

import pytest

from mesh.errors import InvalidArgument
from services.developer_api import usage
from vocelio.common.v1 import usage_pb2

NOW = datetime.datetime(2026, 6, 1, 12, 30, tzinfo=datetime.UTC)
MS = datetime.timedelta(milliseconds=1)


def test_requests_are_classified_like_the_contract_says():
    assert usage.classify(200, "OK") == "ok"
    assert usage.classify(404, "NOT_FOUND") == "client_error"
    assert usage.classify(429, "RESOURCE_EXHAUSTED") == "throttled"
    assert usage.classify(200, "RESOURCE_EXHAUSTED") == "throttled"
    assert usage.classify(503, "UNAVAILABLE") == "server_error"


def test_counters_add_and_merge():
    first = usage.Counters()
    for status in (200, 200, 404, 429, 500):
        first.add_request(status, "", 30 * MS)
    second = usage.Counters()
    second.add_request(200, "OK", 3 * MS)
    first.merge(second)
    assert (first.request_count, first.client_error_count, first.throttled_count, first.server_error_count) == (
        6,
        1,
        1,
        1,
    )
    assert sum(first.histogram) == 6


def test_percentiles_come_from_the_histogram():
    counters = usage.Counters()
    for _ in range(90):
        counters.add_request(200, "OK", 15 * MS)  # bucket (10, 20]
    for _ in range(10):
        counters.add_request(200, "OK", 900 * MS)  # bucket (750, 1000]
    p50 = usage.percentile(counters.histogram, 0.5)
    p95 = usage.percentile(counters.histogram, 0.95)
    assert 10 * MS < p50 <= 20 * MS
    assert 750 * MS < p95 <= 1000 * MS
    assert usage.percentile(usage.empty_histogram(), 0.5) == datetime.timedelta(0)
    slow = usage.Counters()
    slow.add_request(200, "OK", datetime.timedelta(minutes=5))
    assert usage.percentile(slow.histogram, 0.5) == 60_000 * MS


def test_buckets_align_to_utc_hours_and_days():
    moment = datetime.datetime(2026, 6, 1, 14, 45, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert usage.Granularity.HOUR.floor(moment) == datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
    assert usage.Granularity.DAY.floor(moment) == datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def test_usage_offers_hourly_and_daily_buckets_of_the_shared_granularity_only():
    assert usage.granularity_of(usage_pb2.USAGE_GRANULARITY_UNSPECIFIED) is usage.Granularity.DAY
    assert usage.granularity_of(usage_pb2.USAGE_GRANULARITY_HOUR) is usage.Granularity.HOUR
    assert usage.granularity_of(usage_pb2.USAGE_GRANULARITY_DAY) is usage.Granularity.DAY
    with pytest.raises(InvalidArgument) as refused:
        usage.granularity_of(usage_pb2.USAGE_GRANULARITY_MONTH)
    assert refused.value.field_violations == {"granularity": "USAGE_GRANULARITY_MONTH is not offered for API usage"}


def test_usage_ranges():
    start, end = usage.usage_range(NOW - datetime.timedelta(hours=5), None, usage.Granularity.HOUR, NOW)
    assert start == datetime.datetime(2026, 6, 1, 7, tzinfo=datetime.UTC)
    assert end == NOW
    with pytest.raises(InvalidArgument):
        usage.usage_range(None, None, usage.Granularity.DAY, NOW)
    with pytest.raises(InvalidArgument):
        usage.usage_range(NOW - datetime.timedelta(days=8), None, usage.Granularity.HOUR, NOW)
    usage.usage_range(NOW - datetime.timedelta(days=80), None, usage.Granularity.DAY, NOW)
    with pytest.raises(InvalidArgument):
        usage.usage_range(NOW - datetime.timedelta(days=91), None, usage.Granularity.DAY, NOW)
    with pytest.raises(InvalidArgument):
        usage.usage_range(NOW, NOW - datetime.timedelta(hours=2), usage.Granularity.HOUR, NOW)


def test_hours_group_into_days_per_key():
    def one(status):
        counters = usage.Counters()
        counters.add_request(status, "", MS)
        return counters

    day = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
    a, b = ("org_a", "k_a"), ("org_a", "k_b")
    hours = [
        (b, day + datetime.timedelta(hours=1), one(200)),
        (a, day + datetime.timedelta(hours=3), one(200)),
        (a, day + datetime.timedelta(hours=9), one(500)),
        (a, day + datetime.timedelta(days=1), one(200)),
    ]
    buckets = usage.group_buckets(hours, usage.Granularity.DAY)
    assert [(start.day, key, c.request_count) for start, key, c in buckets] == [
        (1, a, 2),
        (1, b, 1),
        (2, a, 1),
    ]
    assert buckets[0][2].server_error_count == 1


def test_log_times_must_be_recent():
    assert usage.validate_log_time(NOW, NOW, "f") == NOW
    for bad in (None, NOW - datetime.timedelta(days=31), NOW + datetime.timedelta(hours=1)):
        with pytest.raises(InvalidArgument):
            usage.validate_log_time(bad, NOW, "f")
