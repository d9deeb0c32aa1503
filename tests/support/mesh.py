"""Run services in-process on ephemeral ports, trusting a test token issuer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from mesh.config import Settings
from mesh.jwks import StaticKeys
from mesh.kit.audit import AuditPort
from mesh.kit.clock import Clock
from mesh.registry import default_registry
from runtime.security import SecurityOptions
from runtime.serve import InProcessMesh
from tests.support.tokens import TestIssuer


def trusting(issuer: TestIssuer, *, api_keys: bool = False) -> SecurityOptions:
    """Security options under which services trust ``issuer`` and follow no revocation stream."""
    return SecurityOptions(keys=StaticKeys(issuer.jwks), watch_revocations=False, api_keys=api_keys)


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings,
    names: list[str] | None = None,
    *,
    issuer: TestIssuer | None = None,
    edge: bool = False,
    clock: Clock | None = None,
    audit: AuditPort | None = None,
) -> AsyncIterator[InProcessMesh]:
    """Start the named services (all by default) and, optionally, the edge; stop them after.

    With an ``issuer`` the services trust its tokens (and skip identity's JWKS and
    revocation stream); without one they use the real identity service, which must then
    be among ``names``. ``clock`` and ``audit`` replace the services' own (see ``tests/support/kit.py``).
    With the edge and every service, it yields once the edge's ``/health`` reads 200, as
    ``make run`` waits for it.
    """
    registry = default_registry()
    specs = [registry.service(n) for n in names] if names else list(registry)
    security = trusting(issuer) if issuer is not None else None
    mesh = InProcessMesh(specs, settings, registry, ephemeral_ports=True, security=security, clock=clock, audit=audit)
    await mesh.start()
    try:
        if edge:
            mesh.edge_port = await mesh.start_edge(port=0)
            if names is None:  # the edge lists every service, so only a whole mesh can read healthy
                await wait_for_edge(mesh.edge_port)
        yield mesh
    finally:
        await mesh.shutdown()


async def wait_for_edge(port: int, limit: float = 60.0) -> None:
    """Poll the edge's ``/health`` until it reads 200; fail after ``limit`` seconds (a bound, not a measurement).

    The edge dials its upstreams lazily, so its first aggregate pays for two dozen connection
    set-ups within one probe deadline; on a loaded machine that first answer can be a 503.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last: object = None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while loop.time() < deadline:
            try:
                response = await client.get("/health")
            except httpx.HTTPError as error:
                last = error
            else:
                if response.status_code == 200:
                    return
                last = response.text
            await asyncio.sleep(0.1)
    raise AssertionError(f"the edge on port {port} never read healthy: {last}")
