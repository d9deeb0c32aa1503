"""Audit entries carry AIP-155 request ids: a UUID4 per entry, kept across deliveries."""

from __future__ import annotations

import datetime
import uuid

from mesh.kit import audit
from mesh.kit.caller import CallerInfo
from mesh.principal import Principal, PrincipalKind
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
ADMIN = Principal("users/u1", PrincipalKind.USER, "acme", "ADMIN", frozenset({"*"}))


def _entry(request_id: str = "") -> identity_service_pb2.RecordAuditEventRequest:
    return audit.audit_request(
        principal=ADMIN,
        caller=CallerInfo(),
        organization_id="acme",
        action=audit_event_pb2.AUDIT_ACTION_API_KEY_CREATED,
        target="organizations/acme/api_keys/k1",
        now=NOW,
        request_id=request_id,
    )


def test_every_entry_gets_its_own_uuid4():
    first, second = _entry(), _entry()
    assert uuid.UUID(first.request_id).version == 4
    assert str(uuid.UUID(first.request_id)) == first.request_id
    assert first.request_id != second.request_id


def test_a_given_request_id_is_kept():
    chosen = str(uuid.uuid4())
    assert _entry(request_id=chosen).request_id == chosen
