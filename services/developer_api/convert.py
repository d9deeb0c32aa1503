"""Rows and domain values to protobuf messages and back."""

from __future__ import annotations

import datetime
import json

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from mesh.kit.sql import timestamp
from services.developer_api.domain import (
    Environment,
    KeySettings,
    KeyState,
    KeyType,
    effective_state,
    key_name,
    log_name,
)
from services.developer_api.models import ApiKeyRow, ApiRequestLogRow
from services.developer_api.restrictions import Restrictions
from services.developer_api.usage import Counters, KeyRef, percentile
from vocelio.developer_api.v1 import api_key_pb2, api_usage_pb2

ENVIRONMENTS = {
    api_key_pb2.API_KEY_ENVIRONMENT_LIVE: Environment.LIVE,
    api_key_pb2.API_KEY_ENVIRONMENT_TEST: Environment.TEST,
}
KEY_TYPES = {
    api_key_pb2.API_KEY_TYPE_SECRET: KeyType.SECRET,
    api_key_pb2.API_KEY_TYPE_PUBLISHABLE: KeyType.PUBLISHABLE,
}
STATES = {
    KeyState.ACTIVE: api_key_pb2.API_KEY_STATE_ACTIVE,
    KeyState.EXPIRED: api_key_pb2.API_KEY_STATE_EXPIRED,
    KeyState.REVOKED: api_key_pb2.API_KEY_STATE_REVOKED,
}
_ENVIRONMENT_VALUES = {value: number for number, value in ENVIRONMENTS.items()}
_KEY_TYPE_VALUES = {value: number for number, value in KEY_TYPES.items()}


def moment(message: Message, field: str) -> datetime.datetime | None:
    """A Timestamp field of a message as aware UTC, or ``None`` when unset."""
    if not message.HasField(field):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=datetime.UTC)


def span(message: Message, field: str) -> datetime.timedelta | None:
    """A Duration field of a message, or ``None`` when unset."""
    if not message.HasField(field):
        return None
    value: duration_pb2.Duration = getattr(message, field)
    return value.ToTimedelta()


def duration(value: datetime.timedelta) -> duration_pb2.Duration:
    """A protobuf Duration."""
    message = duration_pb2.Duration()
    message.FromTimedelta(value)
    return message


def etag(row: ApiKeyRow) -> str:
    """The key's current etag (the kit's, from its name, creation time and revision)."""
    return row.etag_for(key_name(row.organization_id, row.id))


def restrictions_from_proto(message: api_key_pb2.ApiKeyRestrictions) -> Restrictions:
    """Restrictions as given by a caller (not yet validated)."""
    return Restrictions(
        allowed_origins=tuple(message.allowed_origins),
        allowed_ip_ranges=tuple(message.allowed_ip_ranges),
        allowed_agents=tuple(message.allowed_agents),
    )


def restrictions_of(row: ApiKeyRow) -> Restrictions:
    """A stored key's restrictions."""
    return Restrictions.from_dict(json.loads(row.restrictions))


def restrictions_to_proto(value: Restrictions) -> api_key_pb2.ApiKeyRestrictions:
    """The protobuf form of restrictions."""
    return api_key_pb2.ApiKeyRestrictions(
        allowed_origins=value.allowed_origins,
        allowed_ip_ranges=value.allowed_ip_ranges,
        allowed_agents=value.allowed_agents,
    )


def scopes_of(row: ApiKeyRow) -> tuple[str, ...]:
    """A stored key's scopes."""
    return tuple(json.loads(row.scopes))


def labels_of(row: ApiKeyRow) -> dict[str, str]:
    """A stored key's labels."""
    return dict(row.labels)


def settings_of(row: ApiKeyRow) -> KeySettings:
    """The caller-chosen part of a stored key."""
    return KeySettings(
        display_name=row.display_name,
        key_type=KeyType(row.key_type),
        environment=Environment(row.environment),
        scopes=scopes_of(row),
        restrictions=restrictions_of(row),
        expire_time=row.expire_time,
        labels=labels_of(row),
    )


def state_of(row: ApiKeyRow, now: datetime.datetime) -> KeyState:
    """A stored key's state as readers see it (expiry applied)."""
    return effective_state(KeyState(row.state), row.expire_time, now)


def environment_number(value: str) -> int:
    """The ApiKeyEnvironment number of a stored environment."""
    return _ENVIRONMENT_VALUES[Environment(value)]


def key_type_number(value: str) -> int:
    """The ApiKeyType number of a stored key type."""
    return _KEY_TYPE_VALUES[KeyType(value)]


def key_to_proto(row: ApiKeyRow, now: datetime.datetime) -> api_key_pb2.ApiKey:
    """The ApiKey message of a stored key (never its secret or hash)."""
    message = api_key_pb2.ApiKey(
        name=key_name(row.organization_id, row.id),
        organization_id=row.organization_id,
        display_name=row.display_name,
        prefix=row.prefix,
        key_type=key_type_number(row.key_type),  # type: ignore[arg-type]
        environment=environment_number(row.environment),  # type: ignore[arg-type]
        scopes=scopes_of(row),
        restrictions=restrictions_to_proto(restrictions_of(row)),
        state=STATES[state_of(row, now)],
        last_used_address=row.last_used_address,
        revoke_reason=row.revoke_reason,
        rotated_from=key_name(row.organization_id, row.rotated_from) if row.rotated_from else "",
        rotated_to=key_name(row.organization_id, row.rotated_to) if row.rotated_to else "",
        labels=labels_of(row),
        audit=row.audit_info(),
        owner=row.owner or row.creator,
        etag=etag(row),
    )
    for field, value in (
        ("expire_time", row.expire_time),
        ("last_used_time", row.last_used_time),
        ("revoke_time", row.revoke_time),
    ):
        if value is not None:
            getattr(message, field).CopyFrom(timestamp(value))
    return message


def log_to_proto(row: ApiRequestLogRow) -> api_usage_pb2.ApiRequestLog:
    """The ApiRequestLog message of a stored entry."""
    return api_usage_pb2.ApiRequestLog(
        name=log_name(row.organization_id, row.id),
        organization_id=row.organization_id,
        api_key=key_name(row.organization_id, row.api_key_id),
        environment=environment_number(row.environment),  # type: ignore[arg-type]
        request_id=row.request_id,
        request_time=timestamp(row.request_time),
        method=row.method,
        http_method=row.http_method,
        http_path=row.http_path,
        http_status=row.http_status,
        grpc_code=row.grpc_code,
        error_reason=row.error_reason,
        latency=duration(datetime.timedelta(microseconds=row.latency_micros)),
        client_address=row.client_address,
        user_agent=row.user_agent,
    )


def usage_to_proto(
    key: KeyRef, start: datetime.datetime, width: datetime.timedelta, counters: Counters
) -> api_usage_pb2.ApiKeyUsage:
    """One usage bucket of a key, given as (organization id, key id)."""
    return api_usage_pb2.ApiKeyUsage(
        api_key=key_name(*key),
        start_time=timestamp(start),
        end_time=timestamp(start + width),
        request_count=counters.request_count,
        client_error_count=counters.client_error_count,
        server_error_count=counters.server_error_count,
        throttled_count=counters.throttled_count,
        p50_latency=duration(percentile(counters.histogram, 0.50)),
        p95_latency=duration(percentile(counters.histogram, 0.95)),
    )
