"""Serve one or more mesh services in this process until SIGTERM or SIGINT.

One service per process is the default (``make run``); several in one process is the
all-in-one mode for tests and small machines. Either way each service has its own
server on its own port.

Metrics: every server in a process counts on the one process registry (the series
are told apart by ``grpc_service``), so a process serves one metrics port. Alone, a
service serves it beside its gRPC port; several services in one process serve it once,
at the edge's port plus ``VOCELIO_METRICS_PORT_OFFSET`` (9000 by default), and an edge
in the same process reads that registry directly instead of scraping.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from gateway_rest.mesh_upstreams import mesh_app
from gateway_rest.probes import EdgeLifecycle
from gateway_rest.serving import EmbeddedServer, uvicorn_config
from mesh.config import Settings
from mesh.kit.audit import AuditPort
from mesh.kit.clock import Clock
from mesh.parent import stop_when_orphaned
from mesh.registry import Registry, ServiceSpec
from runtime.metrics_endpoint import MetricsEndpoint
from runtime.security import SecurityOptions
from runtime.server import ServiceHost

log = logging.getLogger(__name__)


class InProcessMesh:
    """Several service hosts (and optionally the edge) sharing one event loop."""

    def __init__(
        self,
        specs: list[ServiceSpec],
        settings: Settings,
        registry: Registry,
        *,
        ephemeral_ports: bool = False,
        security: SecurityOptions | None = None,
        clock: Clock | None = None,
        audit: AuditPort | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        # On ephemeral ports a host can only find an events service of this mesh: without one, no relay
        # (it would dial events' contract port, where another mesh may listen).
        relays = not ephemeral_ports or any(spec.name == "events" for spec in specs)
        self.hosts = [
            ServiceHost(
                spec,
                settings,
                registry,
                port=0 if ephemeral_ports else None,
                security=security,
                clock=clock,
                audit=audit,
                serve_metrics=len(specs) == 1,
                relay=relays,
            )
            for spec in specs
        ]
        shared_port = settings.metrics_port_for(0 if ephemeral_ports else settings.edge_listen_port)
        self.metrics = (
            MetricsEndpoint(settings.host, shared_port) if len(specs) > 1 and shared_port is not None else None
        )
        self.edge: uvicorn.Server | None = None
        self._edge_lifecycle: EdgeLifecycle | None = None
        self.edge_port = 0
        self._edge_task: asyncio.Task[None] | None = None

    @property
    def ports(self) -> dict[str, int]:
        """The port each service listens on, by service name."""
        return {host.spec.name: host.port for host in self.hosts}

    async def start(self) -> None:
        """Start every host; if one cannot start, stop the others and raise."""
        results = await asyncio.gather(*(host.start(background=False) for host in self.hosts), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.shutdown()
            raise failures[0]
        if self.metrics is not None:
            try:
                await self.metrics.start()
            except OSError:
                await self.shutdown()
                raise
        # Services on ephemeral ports learn where their peers actually listen.
        for host in self.hosts:
            host.clients.update_ports(self.ports)
            host.start_background()

    async def start_edge(self, port: int | None = None) -> int:
        """Start the REST edge in this loop; returns its port."""
        # The services' series are in this process's registry: the edge shows them without scraping.
        app = mesh_app(self.registry, self.settings, self.ports, scrape_services=not self.hosts)
        listen = self.settings.edge_listen_port if port is None else port
        self._edge_lifecycle = app.state.lifecycle
        self.edge = EmbeddedServer(uvicorn_config(app, self.settings, port=listen))
        self._edge_task = asyncio.create_task(self.edge.serve())
        while not self.edge.started:
            if self._edge_task.done():
                self._edge_task.result()
                raise RuntimeError("the REST edge stopped during start-up")
            await asyncio.sleep(0.01)
        sockets = [s for server in self.edge.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1])

    async def shutdown(self) -> None:
        """Stop the edge and every host, concurrently and gracefully.

        The edge's ``/readyz`` turns 503 at once; it keeps forwarding for the drain time
        (while the services drain too), then stops before the services stop taking calls.
        """
        await asyncio.gather(self._stop_edge(), *(host.shutdown() for host in self.hosts))
        if self.metrics is not None:
            await self.metrics.stop()

    async def _stop_edge(self) -> None:
        if self.edge is None or self._edge_task is None or self._edge_task.done():
            return
        if self._edge_lifecycle is not None:
            self._edge_lifecycle.begin_drain()
        await asyncio.wait([self._edge_task], timeout=self.settings.shutdown_drain)
        self.edge.should_exit = True
        await self._edge_task


async def serve(
    specs: list[ServiceSpec],
    settings: Settings,
    registry: Registry,
    *,
    with_edge: bool = False,
    parent_pid: int | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or the parent's death), then shut down gracefully.

    Args:
        specs: the services to host (may be empty when only the edge runs here).
        settings: the process settings.
        registry: the service registry.
        with_edge: also run the REST edge in this process.
        parent_pid: stop when this process (the supervisor) is gone, so a killed
            supervisor never leaves orphans holding the mesh's ports.

    """
    mesh = InProcessMesh(specs, settings, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphan_watch = asyncio.create_task(stop_when_orphaned(parent_pid, stop)) if parent_pid else None
    await mesh.start()
    if with_edge:
        await mesh.start_edge()
    await stop.wait()
    log.info("shutting down %d service(s)%s", len(specs), " and the edge" if with_edge else "")
    if orphan_watch is not None:
        orphan_watch.cancel()
    await mesh.shutdown()
