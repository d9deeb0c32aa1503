"""Health of a service's dependencies, watched continuously.

:class:`DatabaseWatch` probes the service's database every few seconds and reports each
change (reachable / unreachable) to a callback; the runtime turns that into the
grpc.health.v1 status of the service. The first time the database answers, ``prepare``
runs (development start-up applies migrations there), so a service that starts while
its database is down becomes SERVING by itself once the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from mesh.db import ServiceDatabase
from mesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class DatabaseWatch:
    """Probes one service's database and reports reachability changes."""

    def __init__(
        self,
        database: ServiceDatabase,
        on_change: Callable[[bool], Awaitable[None]],
        *,
        interval: float,
        timeout: float,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._database = database
        self._on_change = on_change
        self._interval = interval
        self._timeout = timeout
        self._prepare = prepare
        self._prepared = prepare is None
        self._healthy: bool | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool | None:
        """The last verdict; ``None`` before the first probe."""
        return self._healthy

    async def check_once(self) -> bool:
        """Probe now, prepare if needed, report a change, and return the verdict."""
        healthy = await self._database.probe(self._timeout)
        if healthy and not self._prepared and self._prepare is not None:
            try:
                await self._prepare()
                self._prepared = True
            except Exception:
                log.exception("preparing the database of %s failed; will retry", self._database.service_name)
                healthy = False
        if healthy != self._healthy:
            if self._healthy is not None or not healthy:
                log.warning(
                    "database of %s is %s (%s)",
                    self._database.service_name,
                    "reachable" if healthy else "UNREACHABLE",
                    self._database.describe(),
                )
            self._healthy = healthy
            await self._on_change(healthy)
        return healthy

    def start(self) -> None:
        """Probe in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name=f"db-watch-{self._database.service_name}")

    async def stop(self) -> None:
        """Stop probing and wait for the probe loop to end."""
        self._stopping.set()
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.check_once()
            except Exception:
                log.exception("database probe of %s crashed", self._database.service_name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
