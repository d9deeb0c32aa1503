"""RecordApiRequests, ListApiRequestLogs and ListApiKeyUsage over real gRPC."""

from __future__ import annotations

import datetime
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from tests.services.developer_api.conftest import ISSUER, Harness
from tests.services.developer_api.test_servicer import ADMIN_A, ADMIN_B, ORG_A, PARENTS, ROOT, create, refused
from vocelio.common.v1 import usage_pb2
from vocelio.developer_api.v1 import api_usage_pb2
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb

NOW = datetime.datetime.now(datetime.UTC)
HOUR_START = NOW.replace(minute=0, second=0, microsecond=0)

# No service records API requests yet; the one that will declares the call. Its token carries just that.
RECORDER = (("authorization", f"Bearer {ISSUER.mint_service('usage_recorder', scope='api_request_logs.create')}"),)


def at(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def entry(key: str, request_id: str, *, status=200, code="OK", latency_ms=20, when=None) -> api_usage_pb2.ApiRequestLog:
    return api_usage_pb2.ApiRequestLog(
        api_key=key,
        request_id=request_id,
        request_time=at(when or HOUR_START + datetime.timedelta(seconds=1)),
        method="/vocelio.agents.v1.AgentsService/GetAgent",
        http_method="GET",
        http_path="/v1/organizations/org_a/agents/a1",
        http_status=status,
        grpc_code=code,
        latency=duration_pb2.Duration(nanos=latency_ms * 1_000_000),
        client_address="203.0.113.9",
        user_agent="crm/1.0",
    )


async def record(harness: Harness, *entries) -> Any:
    return await harness.stub.RecordApiRequests(
        pb.RecordApiRequestsRequest(api_request_logs=list(entries)), metadata=RECORDER, timeout=10
    )


async def logs(harness: Harness, metadata=ADMIN_A, parent="", **fields) -> Any:
    request = pb.ListApiRequestLogsRequest(parent=parent or PARENTS.get(metadata, ORG_A), **fields)
    return await harness.stub.ListApiRequestLogs(request, metadata=metadata, timeout=10)


@pytest.fixture
async def keys(harness: Harness):
    first = (await create(harness)).api_key.name
    second = (await create(harness)).api_key.name
    theirs = (await create(harness, metadata=ADMIN_B)).api_key.name
    return first, second, theirs


async def test_requests_are_recorded_once(harness: Harness, keys):
    first, second, theirs = keys
    reply = await record(
        harness,
        entry(first, "r1"),
        entry(first, "r2", status=404, code="NOT_FOUND"),
        entry(second, "r3", status=429, code="RESOURCE_EXHAUSTED"),
        entry(theirs, "r4", status=500, code="INTERNAL"),
    )
    assert (reply.recorded_count, reply.duplicate_count) == (4, 0)
    retry = await record(harness, entry(first, "r1"), entry(first, "r5", latency_ms=900))
    assert (retry.recorded_count, retry.duplicate_count) == (1, 1)

    # Request ids are unique per organisation: another organisation's r1 is its own entry.
    again = await record(harness, entry(theirs, "r1"))
    assert (again.recorded_count, again.duplicate_count) == (1, 0)

    mine = await logs(harness)
    assert sorted(log.request_id for log in mine.api_request_logs) == ["r1", "r2", "r3", "r5"]
    one = next(log for log in mine.api_request_logs if log.request_id == "r2")
    assert one.organization_id == "org_a"
    assert one.api_key == first
    assert one.http_status == 404
    assert one.name.startswith("organizations/org_a/api_request_logs/r_")
    errors = await logs(harness, filter=f'api_key = "{first}" AND http_status >= 400')
    assert [log.request_id for log in errors.api_request_logs] == ["r2"]
    theirs_only = await logs(harness, metadata=ADMIN_B)
    assert sorted(log.request_id for log in theirs_only.api_request_logs) == ["r1", "r4"]
    everything = await logs(harness, metadata=ROOT, parent="organizations/-")
    assert len(everything.api_request_logs) == 6
    for parent in (ORG_A, "organizations/-"):
        error = await refused(logs(harness, metadata=ADMIN_B, parent=parent))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    page = await logs(harness, page_size=3)
    assert len(page.api_request_logs) == 3
    rest = await logs(harness, page_size=3, page_token=page.next_page_token)
    assert len(rest.api_request_logs) == 1
    assert not rest.next_page_token


async def test_usage_buckets(harness: Harness, keys):
    first, second, _ = keys
    await record(
        harness,
        entry(first, "a1"),
        entry(first, "a2", status=404, code="NOT_FOUND"),
        entry(first, "a3", status=503, code="UNAVAILABLE", latency_ms=900),
        entry(first, "a4", when=HOUR_START - datetime.timedelta(minutes=30)),
        entry(second, "b1", status=429, code="RESOURCE_EXHAUSTED"),
    )
    hourly = await harness.stub.ListApiKeyUsage(
        pb.ListApiKeyUsageRequest(
            parent=first,
            start_time=at(NOW - datetime.timedelta(hours=3)),
            granularity=usage_pb2.USAGE_GRANULARITY_HOUR,
        ),
        metadata=ADMIN_A,
        timeout=10,
    )
    buckets = [(u.start_time.ToDatetime(tzinfo=datetime.UTC), u.request_count) for u in hourly.usage]
    assert buckets == [(HOUR_START - datetime.timedelta(hours=1), 1), (HOUR_START, 3)]
    current = hourly.usage[-1]
    assert (current.client_error_count, current.server_error_count, current.throttled_count) == (1, 1, 0)
    assert current.end_time.ToDatetime(tzinfo=datetime.UTC) == HOUR_START + datetime.timedelta(hours=1)
    assert current.p50_latency.ToTimedelta() <= datetime.timedelta(milliseconds=20)
    assert current.p95_latency.ToTimedelta() > datetime.timedelta(milliseconds=750)

    every = await harness.stub.ListApiKeyUsage(
        pb.ListApiKeyUsageRequest(
            parent="organizations/org_a/api_keys/-", start_time=at(NOW - datetime.timedelta(days=2))
        ),
        metadata=ADMIN_A,
        timeout=10,
    )
    totals: dict[str, int] = {}
    for bucket in every.usage:
        totals[bucket.api_key] = totals.get(bucket.api_key, 0) + bucket.request_count
    assert totals == {first: 4, second: 1}
    theirs = await harness.stub.ListApiKeyUsage(
        pb.ListApiKeyUsageRequest(
            parent="organizations/org_b/api_keys/-", start_time=at(NOW - datetime.timedelta(days=2))
        ),
        metadata=ADMIN_B,
        timeout=10,
    )
    assert list(theirs.usage) == []
    snooping = await refused(
        harness.stub.ListApiKeyUsage(
            pb.ListApiKeyUsageRequest(
                parent="organizations/org_a/api_keys/-", start_time=at(NOW - datetime.timedelta(days=2))
            ),
            metadata=ADMIN_B,
            timeout=10,
        )
    )
    assert snooping.code() == grpc.StatusCode.PERMISSION_DENIED  # a foreign parent, whether or not it exists

    too_long = await refused(
        harness.stub.ListApiKeyUsage(
            pb.ListApiKeyUsageRequest(
                parent=first,
                start_time=at(NOW - datetime.timedelta(days=8)),
                granularity=usage_pb2.USAGE_GRANULARITY_HOUR,
            ),
            metadata=ADMIN_A,
            timeout=10,
        )
    )
    assert too_long.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_batches_are_refused_whole(harness: Harness, keys):
    first, _, _ = keys
    for bad in (
        entry("api_keys/k_nobody", "x0"),
        entry("organizations/org_a/api_keys/k_nobody", "x1"),
        entry(first, ""),
        entry(first, "x2", status=0),
        entry(first, "x3", when=NOW - datetime.timedelta(days=40)),
    ):
        error = await refused(record(harness, entry(first, "fine"), bad))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list((await logs(harness)).api_request_logs) == []
    denied = await refused(
        harness.stub.RecordApiRequests(
            pb.RecordApiRequestsRequest(api_request_logs=[entry(first, "y")]), metadata=ADMIN_A
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
