"""Team hub's entry point for the service host."""

from __future__ import annotations

import grpc

from runtime.handlers import ServiceContext
from services.team_hub.servicer import TeamHubServicer
from vocelio.team_hub.v1 import team_hub_service_pb2_grpc


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the team hub servicer to the server."""
    team_hub_service_pb2_grpc.add_TeamHubServiceServicer_to_server(TeamHubServicer(context), server)  # type: ignore[no-untyped-call]
