"""The supervisor behind ``make run``: starts the mesh, reports it, keeps it alive.

Processes mode (default) runs one process per service plus the REST edge; all-in-one
mode runs every service and the edge in a single process. Either way the supervisor
shows progress while the mesh comes up and a table of services and their health once it
is up (rich on a terminal, plain text otherwise: ``runtime/console.py``), restarts a
child that crashes (with exponential backoff, and says so), and on Ctrl-C or SIGTERM
stops every child gracefully (SIGTERM, then SIGKILL after the grace period).

Each child gets only its own service credential (``VOCELIO_SERVICE_CREDENTIAL``, derived
from the master secret); the master secret itself goes to identity alone (and to the
all-in-one process, which hosts identity).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from typing import TextIO

from mesh import migrations, service_credentials
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.parent import stop_when_parent_dies
from mesh.registry import Registry
from runtime.console import MeshConsole
from runtime.probe import grpc_health, http_status, pss_bytes, rss_bytes

log = logging.getLogger(__name__)

_MAX_BACKOFF = 30.0
_STABLE_AFTER = 60.0


@dataclasses.dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    ports: list[tuple[str, int]]  # (service name or "edge", port) served by this process
    credential: str = ""  # whose service credential the child gets; "" = the master secret (all-in-one)
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0


class Supervisor:
    """Starts, reports and restarts the mesh's processes."""

    def __init__(
        self, settings: Settings, registry: Registry, *, out: TextIO = sys.stdout, ready_timeout: float | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.out = out
        self.console = MeshConsole(out)
        # A fixed 20 s was too short: 24 processes starting at once on a loaded 2-core machine
        # took longer, and the supervisor then called a healthy mesh "NOT ready".
        self.ready_timeout = settings.ready_timeout if ready_timeout is None else ready_timeout
        self.log_dir = settings.var_dir / "log"
        self.children = self._plan()
        self._stopping = asyncio.Event()
        self._child_environment = os.environ.copy()

    def _plan(self) -> list[Child]:
        python = sys.executable
        with_parent = ["--exit-with-parent", str(os.getpid())]
        edge_port = self.settings.edge_listen_port
        if self.settings.mesh_mode == "all-in-one":
            ports = [(spec.name, self.settings.port_for(spec.contract_port)) for spec in self.registry]
            return [
                Child(
                    "mesh",
                    [python, "-m", "runtime", "serve", "--all", "--with-edge", *with_parent],
                    [*ports, ("edge", edge_port)],
                    credential="",
                )
            ]
        children = [
            Child(
                spec.name,
                [python, "-m", "runtime", "serve", spec.name, *with_parent],
                [(spec.name, self.settings.port_for(spec.contract_port))],
                credential=spec.name,
            )
            for spec in self.registry
        ]
        children.append(
            Child(
                "edge",
                [python, "-m", "gateway_rest", "--mesh", *with_parent],
                [("edge", edge_port)],
                credential=service_credentials.EDGE,
            )
        )
        return children

    async def run(self) -> int:
        """Run until stopped; returns the exit code for the command line."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        begin = time.monotonic()
        child_environment = os.environ.copy()
        if self.settings.migrate_on_start and await self._migrate_all():
            # Every database is current: the children need not load Alembic at all.
            child_environment["VOCELIO_MIGRATE_ON_START"] = "false"
        self._child_environment = child_environment
        self._say(
            f"starting {len(self.registry)} services and the REST edge ({self.settings.mesh_mode} mode); "
            f"logs in {self.log_dir}/"
        )
        for child in self.children:
            await self._spawn(child)
        watchers = [asyncio.create_task(self._watch(child)) for child in self.children]
        ready = await self._wait_ready(begin)
        self._print_table(ready, time.monotonic() - begin)
        await self._stopping.wait()
        self._say("stopping the mesh…")
        for watcher in watchers:
            watcher.cancel()
        await self._terminate_all()
        self._say("mesh stopped")
        return 0

    async def _migrate_all(self) -> bool:
        """Migrate every service's database up front, in one process; False if any failed.

        A failure is not fatal: the services then migrate by themselves once their
        database answers (and report NOT_SERVING until it does).
        """

        def migrate() -> list[str]:
            failed = []
            for spec in self.registry:
                database = ServiceDatabase(self.settings, spec.name)
                try:
                    migrations.upgrade(database)
                except Exception as error:  # noqa: BLE001 - reported, and retried by the service
                    failed.append(f"{spec.name} ({type(error).__name__})")
                finally:
                    database.engine.sync_engine.dispose()
            return failed

        failed = await asyncio.to_thread(migrate)
        if failed:
            self._say(f"could not migrate {', '.join(failed)} now; those services will retry by themselves")
        return not failed

    async def _spawn(self, child: Child) -> None:
        log_file = open(self.log_dir / f"{child.name}.log", "ab")  # noqa: SIM115, ASYNC230 - handed to the child; opening is instant
        try:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=self._environment_of(child),
                start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
                preexec_fn=stop_when_parent_dies,  # SIGTERM even if the supervisor is SIGKILLed
            )
        finally:
            log_file.close()
        child.started_at = time.monotonic()

    def _environment_of(self, child: Child) -> dict[str, str]:
        """The child's environment: the supervisor's, with only the child's own service credential."""
        environment = {
            key: value
            for key, value in self._child_environment.items()
            if key not in ("VOCELIO_SERVICE_SECRET", "VOCELIO_SERVICE_CREDENTIAL")
        }
        master = self.settings.mesh_service_secret()
        if child.credential in ("", "identity"):
            # identity verifies every service's credential; the all-in-one process hosts identity
            environment["VOCELIO_SERVICE_SECRET"] = master
        if child.credential:
            environment["VOCELIO_SERVICE_CREDENTIAL"] = service_credentials.derive(master, child.credential)
        return environment

    async def _watch(self, child: Child) -> None:
        while not self._stopping.is_set():
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - child.started_at > _STABLE_AFTER:
                child.backoff = 1.0
            self._say(
                f"{child.name} exited with code {code} (see {self.log_dir / (child.name + '.log')}); "
                f"restarting in {child.backoff:.0f}s"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), child.backoff)
            if self._stopping.is_set():
                return
            child.backoff = min(child.backoff * 2, _MAX_BACKOFF)
            child.restarts += 1
            await self._spawn(child)
            self._say(f"{child.name} restarted (restart #{child.restarts})")

    async def _status(self, name: str, port: int) -> str:
        if name == "edge":
            # the edge asks every service in turn, so it gets their budget and one more
            host = _dialable(self.settings.edge_bind_host)
            code = await http_status(host, port, "/health", 2 * self.settings.health_probe_timeout)
            return "UNREACHABLE" if code is None else f"HTTP {code}"
        return await grpc_health(f"{self.settings.host}:{port}", self.settings.health_probe_timeout)

    async def _statuses(self) -> dict[str, str]:
        pairs = [pair for child in self.children for pair in child.ports]
        results = await asyncio.gather(*(self._status(name, port) for name, port in pairs))
        return {name: status for (name, _), status in zip(pairs, results, strict=True)}

    async def _wait_ready(self, begin: float) -> dict[str, str]:
        statuses: dict[str, str] = {}
        total = sum(len(child.ports) for child in self.children)
        with self.console.coming_up(total) as update:
            while time.monotonic() - begin < self.ready_timeout and not self._stopping.is_set():
                statuses = await self._statuses()
                healthy = sum(1 for s in statuses.values() if s in ("SERVING", "HTTP 200"))
                update(healthy)
                if healthy == len(statuses):
                    return statuses
                await asyncio.sleep(0.25)
        return statuses or await self._statuses()

    def _print_table(self, statuses: dict[str, str], elapsed: float) -> None:
        rows: list[tuple[str, str, str, str]] = []
        total_rss = total_pss = 0
        for child in self.children:
            pid = child.process.pid if child.process else 0
            total_rss += rss_bytes(pid)
            total_pss += pss_bytes(pid)
            for name, port in child.ports:
                host = self.settings.edge_bind_host if name == "edge" else self.settings.host
                rows.append((name, f"{host}:{port}", str(pid), statuses.get(name, "?")))
        self.console.table(rows)
        serving = sum(1 for name, s in statuses.items() if name != "edge" and s == "SERVING")
        verdict = "ready" if serving == len(self.registry) else "NOT ready"
        self._say(
            f"mesh {verdict}: {serving}/{len(self.registry)} services SERVING after {elapsed:.1f}s; "
            f"resident memory {total_rss / 2**20:.0f} MiB (proportional {total_pss / 2**20:.0f} MiB) "
            f"in {len(self.children)} processes; "
            f"REST edge on http://{self.settings.edge_bind_host}:{self.settings.edge_listen_port}; Ctrl-C stops"
        )

    async def _terminate_all(self) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = self.settings.shutdown_drain + self.settings.shutdown_grace + 5.0
        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    self._say(f"pid {process.pid} did not stop within {deadline:.0f}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))

    def _say(self, message: str) -> None:
        self.console.say(message)


def _dialable(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine (a wildcard bind answers on loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
