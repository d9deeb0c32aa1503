"""The request-id interceptor fills an empty AIP-155 request_id, and only that."""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from interceptors.client_idempotency import UnaryRequestIdInterceptor
from vocelio.agents.v1 import agents_service_pb2

CREATE = "/vocelio.agents.v1.AgentsService/CreateAgent"


async def _sent(interceptor: UnaryRequestIdInterceptor, method: str, request: Any) -> Any:
    seen: list[Any] = []

    async def continuation(details: Any, sent: Any) -> Any:
        seen.append(sent)
        return None

    details = grpc.aio.ClientCallDetails(method.encode(), None, None, None, None)  # type: ignore[arg-type]  # as grpc.aio
    await interceptor.intercept_unary_unary(continuation, details, request)
    return seen[0]


async def test_an_empty_request_id_gets_a_fresh_uuid4_and_a_given_one_is_kept() -> None:
    interceptor = UnaryRequestIdInterceptor([CREATE])
    first = await _sent(interceptor, CREATE, agents_service_pb2.CreateAgentRequest(parent="organizations/o"))
    second = await _sent(interceptor, CREATE, agents_service_pb2.CreateAgentRequest(parent="organizations/o"))
    assert uuid.UUID(first.request_id).version == 4
    assert first.request_id != second.request_id
    chosen = str(uuid.uuid4())
    kept = await _sent(interceptor, CREATE, agents_service_pb2.CreateAgentRequest(request_id=chosen))
    assert kept.request_id == chosen


async def test_a_request_sent_again_repeats_its_id() -> None:
    interceptor = UnaryRequestIdInterceptor([CREATE])
    request = agents_service_pb2.CreateAgentRequest(parent="organizations/o")
    first = (await _sent(interceptor, CREATE, request)).request_id
    assert (await _sent(interceptor, CREATE, request)).request_id == first


async def test_other_methods_are_left_alone() -> None:
    interceptor = UnaryRequestIdInterceptor([CREATE])
    request = agents_service_pb2.GetAgentRequest(name="organizations/o/agents/a")
    assert await _sent(interceptor, "/vocelio.agents.v1.AgentsService/GetAgent", request) is request
