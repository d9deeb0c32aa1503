"""The gRPC upstreams the edge talks to: one shared async channel per upstream."""

from __future__ import annotations

import dataclasses

import grpc

from mesh.channels import CHANNEL_OPTIONS


@dataclasses.dataclass(slots=True)
class Upstream:
    """One gRPC server behind the edge.

    Attributes:
        name: short service name (or ``upstream`` in generic mode).
        title: human title.
        address: ``host:port``.
        services: proto service names it serves.

    """

    name: str
    title: str
    address: str
    services: tuple[str, ...]
    _channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        """The shared channel, created on first use (inside the running event loop)."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        return self._channel

    async def close(self) -> None:
        """Close the channel if it was opened."""
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None


class Upstreams:
    """All upstreams, by name and by the proto services they serve."""

    def __init__(self, upstreams: list[Upstream]) -> None:
        self.all = tuple(upstreams)
        self._by_service = {service: u for u in upstreams for service in u.services}

    def for_service(self, full_name: str) -> Upstream | None:
        """The upstream serving a proto service."""
        return self._by_service.get(full_name)

    async def close(self) -> None:
        """Close every channel."""
        for upstream in self.all:
            await upstream.close()
