"""Run services in-process on ephemeral ports, trusting a test token issuer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
    """
    registry = default_registry()
    specs = [registry.service(n) for n in names] if names else list(registry)
    security = trusting(issuer) if issuer is not None else None
    mesh = InProcessMesh(specs, settings, registry, ephemeral_ports=True, security=security, clock=clock, audit=audit)
    await mesh.start()
    if edge:
        mesh.edge_port = await mesh.start_edge(port=0)
    try:
        yield mesh
    finally:
        await mesh.shutdown()
