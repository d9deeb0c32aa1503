"""``Idempotency-Key`` → ``request_id``: derivation, UUID4 pass-through, disagreements, methods without one."""

from __future__ import annotations

import uuid

import pytest

from gateway_rest.errors import EdgeError
from gateway_rest.idempotency_key import apply_idempotency_key, request_id_for
from mesh.kit.idempotency import request_id_problem
from vocelio.agents.v1 import agents_service_pb2 as pb

KEY_UUID = "8E03978E-40D5-43E8-BC93-6894A57F9324"


def test_a_key_becomes_a_deterministic_uuid4_the_store_accepts():
    derived = request_id_for("order-2026-12-07-0001")
    assert derived == request_id_for("order-2026-12-07-0001")
    assert derived != request_id_for("order-2026-12-07-0002")
    assert uuid.UUID(derived).version == 4
    assert request_id_problem(derived) is None


def test_a_uuid4_key_is_the_request_id_itself_and_quotes_are_the_structured_header_form():
    assert request_id_for(KEY_UUID) == KEY_UUID.lower()
    assert request_id_for(f'"{KEY_UUID}"') == KEY_UUID.lower()
    assert request_id_for('"abc"') == request_id_for("abc")


@pytest.mark.parametrize("key", ["", "   ", '""', "x" * 256, "spaces inside", "caf\u00e9"])
def test_malformed_keys_are_a_400(key):
    with pytest.raises(EdgeError) as caught:
        request_id_for(key)
    assert caught.value.http == 400
    assert "Idempotency-Key" in caught.value.message


def test_the_key_fills_an_empty_request_id_and_must_agree_with_a_given_one():
    request = pb.CreateAgentRequest(parent="organizations/o1")
    apply_idempotency_key(request, "k-1")
    assert request.request_id == request_id_for("k-1")
    apply_idempotency_key(request, "k-1")  # the same value in both is fine
    with pytest.raises(EdgeError) as caught:
        apply_idempotency_key(request, "k-2")
    assert caught.value.http == 400
    assert "request_id" in caught.value.message


def test_methods_without_request_id_and_requests_without_the_header_are_left_alone():
    listing = pb.ListAgentsRequest(parent="organizations/o1")
    apply_idempotency_key(listing, "k-1")
    assert listing == pb.ListAgentsRequest(parent="organizations/o1")
    create = pb.CreateAgentRequest()
    apply_idempotency_key(create, None)
    assert create.request_id == ""
