"""The usage half of DeveloperApiService: recording requests, the request log and usage buckets."""

from __future__ import annotations

import datetime
from collections import defaultdict
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from mesh.errors import InvalidArgument
from mesh.kit import ids, paging, tenancy
from mesh.kit.validation import Violations
from mesh.principal import current
from services.developer_api import convert, domain, store, usage_store
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

if TYPE_CHECKING:
    from runtime.handlers import ServiceContext

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class UsageRpcs:
    """RecordApiRequests, ListApiRequestLogs and ListApiKeyUsage (and the kit pieces both halves use)."""

    def __init__(self, context: ServiceContext) -> None:
        self._sessions = context.sessions
        self._clock = context.clock
        self._page_tokens = context.page_tokens
        self._idempotency = context.idempotency
        self._outbox = context.outbox
        self._audit = context.audit
        self._identity_calls = context.identity_calls

    async def RecordApiRequests(
        self, request: pb.RecordApiRequestsRequest, context: Context
    ) -> pb.RecordApiRequestsResponse:
        """Store a batch of requests and count them; request ids already stored are skipped."""
        now = self._clock.now()
        entries = list(request.api_request_logs)
        if len(entries) > MAX_BATCH:
            raise InvalidArgument("too many entries", {"api_request_logs": f"at most {MAX_BATCH} per call"})
        parsed = []
        violations = Violations()
        for index, entry in enumerate(entries):
            field = f"api_request_logs[{index}]"
            try:
                key = domain.parse_key_name(entry.api_key, f"{field}.api_key")
                moment = validate_log_time(convert.moment(entry, "request_time"), now, f"{field}.request_time")
            except InvalidArgument as error:
                violations.update(error.field_violations)
                continue
            violations.check(0 < len(entry.request_id) <= 128, f"{field}.request_id", "1 to 128 characters")
            violations.check(100 <= entry.http_status <= 599, f"{field}.http_status", "100 to 599")
            latency = convert.span(entry, "latency") or datetime.timedelta(0)
            violations.check(latency >= datetime.timedelta(0), f"{field}.latency", "0 or more")
            parsed.append((entry, key, moment, latency))
        violations.raise_if_any()
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
                        "id": ids.new_id("r"),
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
        parent = domain.LOGS.parse_parent(request.parent)
        scope = tenancy.list_scope(current(), parent.organization)
        size = paging.page_size(request.page_size, default=50, maximum=200)
        binding = paging.query_binding(request, scope.binding())
        after = self._page_tokens.decode_optional(request.page_token, binding)
        async with self._sessions.begin() as session:
            page = await usage_store.list_logs(session, scope.organization_id, request.filter, after=after, limit=size)
        token = self._page_tokens.encode(page.next_after, binding) if page.next_after else ""
        return pb.ListApiRequestLogsResponse(
            api_request_logs=[convert.log_to_proto(r) for r in page.items], next_page_token=token
        )

    async def ListApiKeyUsage(self, request: pb.ListApiKeyUsageRequest, context: Context) -> pb.ListApiKeyUsageResponse:
        """A key's (or every key's) traffic in hourly or daily buckets, oldest first."""
        principal, now = current(), self._clock.now()
        organization_id, key_id = domain.parse_usage_parent(request.parent)
        if key_id is None:
            # "…/api_keys/-" lists the organisation's usage: another organisation is a foreign parent.
            tenancy.list_scope(principal, organization_id)
        granularity = granularity_of(request.granularity)
        start, end = usage_range(
            convert.moment(request, "start_time"), convert.moment(request, "end_time"), granularity, now
        )
        size = paging.page_size(request.page_size, default=200, maximum=1000)
        binding = paging.query_binding(request)
        after = _usage_position(self._page_tokens.decode_optional(request.page_token, binding))
        async with self._sessions.begin() as session:
            if key_id is not None:
                row = await store.find_key(session, organization_id, key_id)
                if row is None or not tenancy.may_read(principal, organization_id):
                    raise tenancy.not_found(request.parent)
            hours = await usage_store.usage_hours(session, organization_id, key_id, start, end)
        buckets = [b for b in group_buckets(hours, granularity) if after is None or (b[0], b[1]) > after]
        page = buckets[:size]
        token = ""
        if len(buckets) > size:
            last_start, (last_organization, last_key), _ = page[-1]
            token = self._page_tokens.encode([paging.time_key(last_start), last_organization, last_key], binding)
        return pb.ListApiKeyUsageResponse(
            usage=[convert.usage_to_proto(k, s, granularity.width, c) for s, k, c in page], next_page_token=token
        )


def _usage_position(position: paging.Position | None) -> tuple[datetime.datetime, KeyRef] | None:
    if position is None:
        return None
    micros, organization_id, key_id = paging.position_shape(position, int, str, str)
    return paging.from_time_key(micros), (organization_id, key_id)
