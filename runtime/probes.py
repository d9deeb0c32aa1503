"""The grpc.health.v1 names a service answers, as Kubernetes probes read them.

A service's health has two meanings that must not be mixed up:

- **liveness** (:data:`LIVENESS`): the process is sound, its event loop answers. It is
  SERVING from the moment the server listens until the very end of shutdown, also while
  the database is down, so a liveness probe never restarts every pod during a database
  outage.
- **readiness** (:data:`READINESS`, the overall name ``""`` that gRPC clients and
  ``grpc_health_probe`` ask by default, and the service's full name): the service can do
  its work. It follows the dependencies (the database watch) and turns NOT_SERVING for
  good when shutdown begins (the drain), so balancers stop sending calls while in-flight
  ones finish.
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

LIVENESS = "liveness"
READINESS = "readiness"

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthProbes:
    """Keeps the liveness and readiness names of one service's health servicer."""

    def __init__(self, health: HealthServicer, service_full_name: str) -> None:
        self._health = health
        self.readiness_names = ("", READINESS, service_full_name)
        self._draining = False

    async def start(self) -> None:
        """Alive, not ready yet (the database has not answered)."""
        await self._health.set(LIVENESS, SERVING)
        await self._set_readiness(NOT_SERVING)

    async def ready(self, ready: bool) -> None:
        """Readiness follows the dependencies, until the drain has begun."""
        if not self._draining:
            await self._set_readiness(SERVING if ready else NOT_SERVING)

    async def drain(self) -> None:
        """Shutdown begins: not ready any more, for good; still alive."""
        self._draining = True
        await self._set_readiness(NOT_SERVING)

    async def stop(self) -> None:
        """The very end: every name NOT_SERVING, and later changes ignored."""
        self._draining = True
        await self._health.enter_graceful_shutdown()

    async def _set_readiness(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in self.readiness_names:
            await self._health.set(name, status)
