"""Errors with a declared reason become statuses with google.rpc.ErrorInfo (and BadRequest)."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2, error_details_pb2

from mesh.errors import (
    ErrorReasons,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    retry_duration,
    rich_status,
)
from vocelio.agents.v1 import agents_errors_pb2
from vocelio.common.v1 import usage_pb2
from vocelio.identity.v1 import identity_errors_pb2

IDENTITY = ErrorReasons(identity_errors_pb2.ErrorReason)


def _details(status):
    found = []
    for packed in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.QuotaFailure,
        ):
            if packed.Is(kind.DESCRIPTOR):
                detail = kind()
                packed.Unpack(detail)
                found.append(detail)
    return found


def test_a_reason_travels_as_error_info_with_the_service_domain():
    error = FailedPrecondition("account locked").with_reason(
        IDENTITY, identity_errors_pb2.ERROR_REASON_ACCOUNT_LOCKED, {"locked_until": "2026-06-01T12:00:00Z"}
    )
    status = rich_status(error)
    assert (status.code, status.message) == (code_pb2.FAILED_PRECONDITION, "account locked")
    assert _details(status) == [
        error_details_pb2.ErrorInfo(
            reason="ACCOUNT_LOCKED", domain="identity.vocelio.com", metadata={"locked_until": "2026-06-01T12:00:00Z"}
        )
    ]


def test_field_violations_and_a_reason_are_both_sent():
    error = InvalidArgument("bad grant", {"grant_type": "required"}).with_reason(
        IDENTITY, identity_errors_pb2.ERROR_REASON_INVALID_REQUEST
    )
    bad_request, info = _details(rich_status(error))
    assert [v.field for v in bad_request.field_violations] == ["grant_type"]
    assert (info.reason, info.domain) == ("INVALID_REQUEST", "identity.vocelio.com")


def test_an_error_without_a_reason_has_no_error_info():
    assert _details(rich_status(FailedPrecondition("no"))) == []


def test_only_declared_values_of_a_service_error_reason_enum_are_accepted():
    with pytest.raises(ValueError, match="not a declared reason"):
        IDENTITY.reason(identity_errors_pb2.ERROR_REASON_UNSPECIFIED)
    with pytest.raises(ValueError, match="not a declared reason"):
        IDENTITY.reason(999)
    with pytest.raises(ValueError, match="not a service's ErrorReason"):
        ErrorReasons(usage_pb2.UsageGranularity)
    assert ErrorReasons(agents_errors_pb2.ErrorReason).declared() == {
        "AGENT_ARCHIVED",
        "DRAFT_NOT_READY",
        "NOTHING_TO_PUBLISH",
        "AGENT_IN_USE",
    }


def test_a_retry_delay_and_quota_violations_travel_as_retry_info_and_quota_failure():
    error = (
        ResourceExhausted("slow down")
        .with_retry_delay(0.0004)
        .with_quota_violation("users/a", "READ calls: 1 per second")
        .with_quota_violation("users/a", "another quota")
    )
    status = rich_status(error)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    retry, quota = _details(status)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (0, 1_000_000)  # rounded up, never shorter
    assert [(v.subject, v.description) for v in quota.violations] == [
        ("users/a", "READ calls: 1 per second"),
        ("users/a", "another quota"),
    ]


def test_retry_durations_round_up_to_the_millisecond():
    assert (retry_duration(2.5).seconds, retry_duration(2.5).nanos) == (2, 500_000_000)
    assert (retry_duration(-1).seconds, retry_duration(-1).nanos) == (0, 0)
