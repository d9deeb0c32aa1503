"""Several edge worker processes on one port: the edge uses every core.

The parent binds the listening socket once (a port in use fails there, loudly) and starts
``count`` workers, each ``python -m gateway_rest … --worker-fd FD --exit-with-parent PID``
serving the inherited socket (``gateway_rest/serving.py``); the kernel hands each new
connection to whichever worker accepts it first, so an idle worker takes the next one.
Workers share nothing: each has its own upstream channels, caches and service token (see
docs/REST.md). Their Prometheus metrics meet in ``PROMETHEUS_MULTIPROC_DIR``, a fresh empty
folder under ``var/`` that the parent creates for them and removes when it exits.

No worker outlives the parent: each gets SIGTERM from the kernel when the parent dies
(``PR_SET_PDEATHSIG``) and polls the parent's pid too. A worker that exits on its own is
restarted at once and the parent says so; more than :data:`MAX_CRASHES` exits within
:data:`CRASH_WINDOW` seconds (a worker that cannot start, a crash loop) bring the whole edge
down with exit code 1, so its own supervisor (``make run``, Kubernetes) sees it. SIGTERM or
SIGINT to the parent reaches every worker, which drains and stops; one still running after
drain + grace + 5 s is killed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pathlib
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

from mesh.config import Settings
from mesh.parent import stop_when_orphaned, stop_when_parent_dies

log = logging.getLogger(__name__)

MAX_CRASHES = 5
CRASH_WINDOW = 60.0
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class EdgeWorkers:
    """The parent of the edge's worker processes."""

    def __init__(
        self,
        edge_argv: Sequence[str],
        sock: socket.socket,
        settings: Settings,
        environment: Mapping[str, str],
        *,
        count: int,
        parent_pid: int | None = None,
    ) -> None:
        """Prepare ``count`` workers; nothing starts until :meth:`run`.

        Args:
            edge_argv: the edge's own command-line arguments, which every worker repeats.
            sock: the bound, listening socket the workers share.
            settings: the process settings (drain and grace times, ``var_dir``).
            environment: the workers' environment (``PROMETHEUS_MULTIPROC_DIR`` is added).
            count: how many workers.
            parent_pid: stop when this process is gone (``--exit-with-parent``).

        """
        self._argv = [
            sys.executable, "-m", "gateway_rest", *edge_argv,
            "--worker-fd", str(sock.fileno()), "--exit-with-parent", str(os.getpid()),
        ]  # fmt: skip
        self._sock = sock
        self._settings = settings
        self._environment = dict(environment)
        self._count = count
        self._parent_pid = parent_pid
        self._stopping = asyncio.Event()
        self._crashes: collections.deque[float] = collections.deque()
        self._failed = False
        self.processes: list[asyncio.subprocess.Process] = []
        self.metrics_dir: pathlib.Path | None = None

    async def run(self) -> int:
        """Start the workers, keep them running until stopped, stop them; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        self._settings.var_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_dir = pathlib.Path(tempfile.mkdtemp(prefix="edge-metrics-", dir=self._settings.var_dir))
        self._environment[METRICS_DIR_VARIABLE] = str(self.metrics_dir)
        tasks = [asyncio.create_task(stop_when_orphaned(self._parent_pid, self._stopping))] if self._parent_pid else []
        try:
            self.processes = [await self._spawn() for _ in range(self._count)]
            host, port = self._sock.getsockname()[:2]
            log.info("edge listening on %s:%d with %d worker processes", host, port, self._count)
            tasks += [asyncio.create_task(self._keep(slot)) for slot in range(self._count)]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            await self._terminate()
        finally:
            for task in tasks:
                task.cancel()
            for process in self.processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self._sock.close()
        log.info("edge stopped")
        return 1 if self._failed else 0

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            env=self._environment,
            pass_fds=(self._sock.fileno(),),
            preexec_fn=stop_when_parent_dies,
        )

    async def _keep(self, slot: int) -> None:
        """Wait for the worker in ``slot`` to exit; restart it, or give up on a crash loop."""
        while not self._stopping.is_set():
            process = self.processes[slot]
            code = await process.wait()
            if self._stopping.is_set():
                return
            self._forget_metrics_of(process.pid)
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > CRASH_WINDOW:
                self._crashes.popleft()
            if len(self._crashes) > MAX_CRASHES:
                log.error(
                    "edge worker pid %d exited with code %s; %d worker exits within %.0fs: stopping the edge",
                    process.pid, code, len(self._crashes), CRASH_WINDOW,
                )  # fmt: skip
                self._failed = True
                self._stopping.set()
                return
            self.processes[slot] = await self._spawn()
            log.error(
                "edge worker pid %d exited with code %s; restarted as pid %d",
                process.pid, code, self.processes[slot].pid,
            )  # fmt: skip

    async def _terminate(self) -> None:
        running = [p for p in self.processes if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        limit = self._settings.shutdown_drain + self._settings.shutdown_grace + 5.0
        try:
            async with asyncio.timeout(limit):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    log.error("edge worker pid %d did not stop within %.0fs; killing it", process.pid, limit)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()

    def _forget_metrics_of(self, pid: int) -> None:
        """A dead worker's live gauges must not be summed any more (prometheus_client multiprocess mode)."""
        if self.metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
