"""Wires the agents service into a service host."""

from __future__ import annotations

import grpc

from runtime.handlers import ServiceContext
from services.agents.servicer import AgentsServicer
from services.agents.usage import NoReferringServices
from vocelio.agents.v1 import agents_service_pb2_grpc


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the agents servicer to ``server``."""
    servicer = AgentsServicer(
        context.sessions,
        context.page_tokens,
        NoReferringServices(),
        clock=context.clock,
        idempotency=context.idempotency,
        outbox=context.outbox,
        reads=context.database,
    )
    agents_service_pb2_grpc.add_AgentsServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
