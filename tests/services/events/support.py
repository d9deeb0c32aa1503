"""Helpers for the events service tests: a running service, callers, proposed events."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mesh.config import Settings
from mesh.kit.clock import Clock, SystemClock
from mesh.registry import default_registry
from tests.support.kit import ISSUER, KitService, kit_service
from tests.support.tokens import every_permission
from vocelio.events.v1 import events_service_pb2, events_service_pb2_grpc

pb = events_service_pb2
Stub = events_service_pb2_grpc.EventsServiceStub
Metadata = tuple[tuple[str, str], ...]


def service_metadata(name: str = "relay") -> Metadata:
    """A mesh service's token allowed every events method."""
    scope = every_permission(default_registry().service("events"))
    return (("authorization", f"Bearer {ISSUER.mint_service(name, scope=scope)}"),)


@dataclasses.dataclass
class Events:
    """One running events service and its callers."""

    service: KitService
    stub: Stub
    mesh: Metadata

    def admin(self, org: str) -> Metadata:
        """An organisation ADMIN."""
        return self.service.as_user(org, "ADMIN", user=f"users/admin_{org}")

    def root(self) -> Metadata:
        """A platform SUPER_ADMIN."""
        return self.service.as_platform_admin()

    async def append(
        self,
        stream: str,
        events: Sequence[pb.ProposedEvent] | int = 1,
        *,
        organization_id: str = "",
        **expected: Any,
    ) -> pb.AppendToStreamResponse:
        """Append (as a mesh service) ``events`` or that many fresh ones."""
        proposed = [proposed_event() for _ in range(events)] if isinstance(events, int) else list(events)
        request = pb.AppendToStreamRequest(stream=stream, organization_id=organization_id, events=proposed, **expected)
        reply: pb.AppendToStreamResponse = await self.stub.AppendToStream(request, metadata=self.mesh, timeout=10)
        return reply


def proposed_event(
    event_type: str = "call.completed", data: dict[str, Any] | None = None, **fields: Any
) -> pb.ProposedEvent:
    """An untyped proposed event with a fresh id."""
    payload = struct_pb2.Struct()
    payload.update(data if data is not None else {"n": 1})
    return pb.ProposedEvent(event_id=str(uuid.uuid4()), type=event_type, data=payload, **fields)


@contextlib.asynccontextmanager
async def running_events(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Events]:
    """The events service on port 0 (system clock unless given)."""
    async with kit_service(settings, "events", clock=clock or SystemClock()) as service:
        yield Events(service, service.stub(Stub), service_metadata())


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


async def take(call: Any, count: int) -> list[Any]:
    """The first ``count`` messages of a streaming call (fewer if it ends first)."""
    messages = []
    async for message in call:
        messages.append(message)
        if len(messages) == count:
            break
    return messages
