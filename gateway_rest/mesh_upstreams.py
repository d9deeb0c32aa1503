"""Upstreams of the Vocelio mesh, from the registry and the settings."""

from __future__ import annotations

from gateway_rest.upstreams import Upstream, Upstreams
from mesh.config import Settings
from mesh.registry import Registry


def mesh_upstreams(registry: Registry, settings: Settings, ports: dict[str, int] | None = None) -> Upstreams:
    """One upstream per mesh service at its configured address.

    Args:
        registry: the services.
        settings: host and port offset.
        ports: actual ports by service name, where they differ from the configured ones
            (an in-process mesh on ephemeral ports).

    """
    ports = ports or {}
    return Upstreams(
        [
            Upstream(
                name=spec.name,
                title=spec.title,
                address=f"{settings.host}:{ports.get(spec.name, settings.port_for(spec.contract_port))}",
                services=(spec.full_name,),
            )
            for spec in registry
        ]
    )
