"""The usage half of DeveloperApiService: recording requests, the request log and usage buckets."""

from __future__ import annotations

import datetime
import secrets
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import grpc

from mesh.errors import InvalidArgument
from mesh.principal import current
from services.developer_api import convert, domain, store, usage_store
from services.developer_api.listing import (
    EQUALITY,
    ORDERING,
    Condition,
    decode_page_token,
    encode_page_token,
    page_size,
    parse_filter,
    query_fingerprint,
)
from services.developer_api.models import utc
from services.developer_api.usage import (
    MAX_BATCH,
    Counters,
    Granularity,
    KeyRef,
    granularity_of,
    group_buckets,
    usage_range,
    validate_log_time,
)
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]

LOG_FIELDS = {
    "api_key": EQUALITY,
    "method": EQUALITY,
    "http_status": ORDERING,
    "grpc_code": EQUALITY,
    "request_id": EQUALITY,
    "request_time": ORDERING,
}


def _checked_log_condition(condition: Condition) -> Condition:
    """A log filter condition whose value parses for its field."""
    if condition.field == "api_key":
        organization_id, key_id = domain.parse_key_name(condition.value, "filter")
        return Condition(condition.field, condition.op, f"{organization_id}/{key_id}")
    try:
        if condition.field == "http_status":
            int(condition.value)
        elif condition.field == "request_time":
            moment = datetime.datetime.fromisoformat(condition.value)
            if moment.tzinfo is None:
                raise ValueError("no zone")
            return Condition(condition.field, condition.op, moment.astimezone(datetime.UTC).isoformat())
    except ValueError:
        raise InvalidArgument(
            f"bad value for {condition.field}: {condition.value!r}",
            {"filter": "http_status takes a number, request_time an RFC 3339 time in quotes"},
        ) from None
    return condition


def _position(token: str, fingerprint: str) -> tuple[datetime.datetime, str] | None:
    position = decode_page_token(token, fingerprint)
    if position is None:
        return None
    try:
        return datetime.datetime.fromisoformat(position[0]), str(position[1])
    except (ValueError, IndexError, TypeError):
        raise InvalidArgument("invalid page_token", {"page_token": "use a next_page_token as returned"}) from None


def _usage_position(token: str, fingerprint: str) -> tuple[datetime.datetime, KeyRef] | None:
    position = decode_page_token(token, fingerprint)
    if position is None:
        return None
    try:
        return datetime.datetime.fromisoformat(position[0]), (str(position[1]), str(position[2]))
    except (ValueError, IndexError, TypeError):
        raise InvalidArgument("invalid page_token", {"page_token": "use a next_page_token as returned"}) from None


class UsageRpcs:
    """RecordApiRequests, ListApiRequestLogs and ListApiKeyUsage."""

    def __init__(self, sessions: Any, clock: Callable[[], datetime.datetime]) -> None:
        self._sessions = sessions
        self._clock = clock

    async def RecordApiRequests(
        self, request: pb.RecordApiRequestsRequest, context: Context
    ) -> pb.RecordApiRequestsResponse:
        """Store a batch of requests and count them; request ids already stored are skipped."""
        now = self._clock()
        entries = list(request.api_request_logs)
        if len(entries) > MAX_BATCH:
            raise InvalidArgument("too many entries", {"api_request_logs": f"at most {MAX_BATCH} per call"})
        parsed = []
        for index, entry in enumerate(entries):
            field = f"api_request_logs[{index}]"
            key = domain.parse_key_name(entry.api_key, f"{field}.api_key")
            if not entry.request_id or len(entry.request_id) > 128:
                raise InvalidArgument("request_id is required", {f"{field}.request_id": "1 to 128 characters"})
            if not 100 <= entry.http_status <= 599:
                raise InvalidArgument("http_status out of range", {f"{field}.http_status": "100 to 599"})
            latency = convert.span(entry, "latency") or datetime.timedelta(0)
            if latency < datetime.timedelta(0):
                raise InvalidArgument("latency must not be negative", {f"{field}.latency": "0 or more"})
            moment = validate_log_time(convert.moment(entry, "request_time"), now, f"{field}.request_time")
            parsed.append((entry, key, moment, latency))
        async with self._sessions.begin() as session:
            environments = await usage_store.key_environments(session, (key for _, key, _, _ in parsed))
            unknown = sorted({domain.key_name(*key) for _, key, _, _ in parsed if key not in environments})
            if unknown:
                raise InvalidArgument(f"unknown API keys: {', '.join(unknown)}", {"api_request_logs": "known keys"})
            # Request ids are unique per organisation: the first entry of a batch wins.
            rows: dict[tuple[str, str], dict[str, Any]] = {}
            for entry, key, moment, latency in parsed:
                organization_id, key_id = key
                rows.setdefault(
                    (organization_id, entry.request_id),
                    {
                        "id": "r_" + secrets.token_hex(12),
                        "organization_id": organization_id,
                        "api_key_id": key_id,
                        "environment": environments[key],
                        "request_id": entry.request_id,
                        "request_time": moment,
                        "method": entry.method[:300],
                        "http_method": entry.http_method[:16],
                        "http_path": entry.http_path[:2048],
                        "http_status": entry.http_status,
                        "grpc_code": entry.grpc_code[:32],
                        "error_reason": entry.error_reason[:128],
                        "latency_micros": latency // datetime.timedelta(microseconds=1),
                        "client_address": entry.client_address[:64],
                        "user_agent": entry.user_agent[:512],
                    },
                )
            inserted = await usage_store.insert_logs(session, list(rows.values()))
            hours: dict[tuple[KeyRef, datetime.datetime], Counters] = defaultdict(Counters)
            for stored in inserted:
                row = rows[stored]
                key = (row["organization_id"], row["api_key_id"])
                counters = hours[(key, Granularity.HOUR.floor(row["request_time"]))]
                latency = datetime.timedelta(microseconds=row["latency_micros"])
                counters.add_request(row["http_status"], row["grpc_code"], latency)
            # A fixed order, so concurrent batches lock usage rows without deadlocking.
            for (key, hour), counters in sorted(hours.items()):
                await usage_store.add_usage(session, key=key, hour=hour, counters=counters)
            await usage_store.prune(session, now)
        return pb.RecordApiRequestsResponse(recorded_count=len(inserted), duplicate_count=len(entries) - len(inserted))

    async def ListApiRequestLogs(
        self, request: pb.ListApiRequestLogsRequest, context: Context
    ) -> pb.ListApiRequestLogsResponse:
        """The organisation's request log (every organisation's for ``organizations/-``), newest first."""
        scope = domain.list_scope(current(), domain.parse_parent(request.parent), "API request logs")
        size = page_size(request.page_size, default=50, maximum=200)
        conditions = [_checked_log_condition(c) for c in parse_filter(request.filter, LOG_FIELDS)]
        fingerprint = query_fingerprint("api_request_logs", request.parent, request.filter)
        after = _position(request.page_token, fingerprint)
        async with self._sessions.begin() as session:
            rows = await usage_store.list_logs(
                session,
                scope,
                conditions=[usage_store.log_condition(c) for c in conditions],
                after=after,
                limit=size + 1,
            )
        page = rows[:size]
        token = ""
        if len(rows) > size:
            token = encode_page_token([utc(page[-1].request_time).isoformat(), page[-1].id], fingerprint)
        return pb.ListApiRequestLogsResponse(
            api_request_logs=[convert.log_to_proto(r) for r in page], next_page_token=token
        )

    async def ListApiKeyUsage(self, request: pb.ListApiKeyUsageRequest, context: Context) -> pb.ListApiKeyUsageResponse:
        """A key's (or every key's) traffic in hourly or daily buckets, oldest first."""
        now = self._clock()
        organization_id, key_id = domain.parse_key_name(request.parent, "parent", any_key=True)
        domain.readable_organization(current(), organization_id, request.parent)
        granularity = granularity_of(request.granularity)
        start, end = usage_range(
            convert.moment(request, "start_time"), convert.moment(request, "end_time"), granularity, now
        )
        size = page_size(request.page_size, default=200, maximum=1000)
        fingerprint = query_fingerprint("usage", request.parent, start, end, granularity.name)
        after = _usage_position(request.page_token, fingerprint)
        one_key = None if key_id == domain.EVERY else key_id
        async with self._sessions.begin() as session:
            if one_key is not None:
                await store.get_key(session, organization_id, one_key)
            hours = await usage_store.usage_hours(session, organization_id, one_key, start, end)
        buckets = [b for b in group_buckets(hours, granularity) if after is None or (b[0], b[1]) > after]
        page = buckets[:size]
        token = ""
        if len(buckets) > size:
            last_start, (last_organization, last_key) = page[-1][0], page[-1][1]
            token = encode_page_token([last_start.isoformat(), last_organization, last_key], fingerprint)
        return pb.ListApiKeyUsageResponse(
            usage=[convert.usage_to_proto(k, s, granularity.width, c) for s, k, c in page], next_page_token=token
        )
