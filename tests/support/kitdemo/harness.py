"""Serve the kit demo through a real ServiceHost: the mesh's interceptors, a test issuer, port 0."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator

import grpc
import kitdemo

from mesh.access import AccessTable, Role
from mesh.config import Settings
from mesh.kit.clock import Clock, FixedClock
from mesh.registry import Registry
from runtime.server import ServiceHost
from tests.support.kit import ISSUER, KitService, RecordingAudit
from tests.support.kitdemo import service
from tests.support.kitdemo.models import Base
from tests.support.mesh import trusting
from tests.support.tokens import TestIssuer

REGISTRY = Registry.from_descriptor_set(pathlib.Path(next(iter(kitdemo.__path__))).parent / "testing.binpb")
SPEC = REGISTRY.service("kitdemo")


class DemoAccess(AccessTable):
    """Roles for widgets: readers read; MANAGER and up change; SUPER_ADMIN everything."""

    def permissions(self, role: Role) -> frozenset[str]:
        """What a role may do with widgets."""
        if role is Role.SUPER_ADMIN:
            return frozenset({"*"})
        if role >= Role.MANAGER:
            return self.all_permissions
        return (
            frozenset(p for p in self.all_permissions if p.endswith((".get", ".list")))
            if role >= Role.VIEWER
            else frozenset()
        )

    def allows(self, role: Role, permission: str) -> bool:
        """Whether a role holds a permission."""
        grants = self.permissions(role)
        return "*" in grants or permission in grants


@contextlib.asynccontextmanager
async def running_kitdemo(
    settings: Settings, *, issuer: TestIssuer = ISSUER, clock: Clock | None = None
) -> AsyncIterator[KitService]:
    """The kit demo on port 0, trusting ``issuer``; its table is created from the models."""
    clock = clock or FixedClock()
    audit = RecordingAudit()
    host = ServiceHost(
        SPEC,
        settings,
        REGISTRY,
        port=0,
        security=trusting(issuer),
        clock=clock,
        audit=audit,
        access=DemoAccess(REGISTRY),
        implementation=service,
    )
    await host.start()
    try:
        async with host.database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            yield KitService(host, channel, issuer, clock, audit)
    finally:
        await host.shutdown()
