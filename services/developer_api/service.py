"""Wires developer_api into a server."""

from __future__ import annotations

import grpc

from runtime.handlers import ServiceContext
from services.developer_api.credentials import SecretBox
from services.developer_api.servicer import DeveloperApiServicer
from vocelio.developer_api.v1 import developer_api_service_pb2_grpc as pb_grpc


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the DeveloperApiService servicer to the server."""
    servicer = DeveloperApiServicer(context, SecretBox(context.settings.mesh_key_encryption_key()))
    pb_grpc.add_DeveloperApiServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
