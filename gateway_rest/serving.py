"""One edge process serving its application on a listening socket, with a drain on SIGTERM.

The same loop runs the single edge process and each of several worker processes
(``gateway_rest/workers.py``): SIGTERM or SIGINT (or the parent's death, with
``parent_pid``) turns ``/readyz`` 503 (``app.state.lifecycle``), keeps serving for
``shutdown_drain`` seconds so balancers notice, then stops accepting and gives open
requests ``shutdown_grace`` seconds.

That loop is uvloop's (:func:`run`), as ``uvicorn[standard]`` intends: uvicorn picks its
loop only in ``uvicorn.run``/``Server.run``, and the edge drives ``Server.serve`` on a loop
of its own, so without this it ran on asyncio's default loop (measured on the chain bench's
GET, 8 interleaved wrk rounds on a shared machine: 905 vs 942 µs of edge CPU per request,
medians, ~4 % less on uvloop). grpc.aio's client channels run on it unchanged; httptools
parses HTTP/1.1 (uvicorn's ``http="auto"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from gateway_rest.probes import EdgeLifecycle
from mesh.config import Settings
from mesh.parent import stop_when_orphaned

log = logging.getLogger(__name__)


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run an edge process's main coroutine to its end on uvloop (asyncio's own loop if uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the caller's loop owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signal handling to the caller."""
        yield


def uvicorn_config(app: Starlette, settings: Settings, host: str = "", port: int = 0) -> uvicorn.Config:
    """How every edge process runs uvicorn (``host``/``port`` only where uvicorn binds itself)."""
    return uvicorn.Config(
        app,
        host=host or settings.edge_bind_host,
        port=port,
        timeout_graceful_shutdown=int(settings.shutdown_grace + 0.999),
        log_config=None,
        access_log=False,
        # The edge is the first hop: it trusts no X-Forwarded-For a client sends.
        proxy_headers=False,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (``SO_REUSEPORT`` off: a port in use fails here, loudly).

    Raises:
        OSError: the address cannot be bound.

    """
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose ``proto`` says TCP,
    # and without it Nagle and delayed ACKs held every response ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def serve(app: Starlette, sock: socket.socket, settings: Settings, *, parent_pid: int | None = None) -> int:
    """Serve ``app`` on ``sock`` until SIGTERM/SIGINT or the parent's death; drain, then stop.

    Returns:
        The process exit code: 0 after a requested stop, 1 if the server stopped by itself.

    """
    server = EmbeddedServer(uvicorn_config(app, settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchers = [asyncio.create_task(stop_when_orphaned(parent_pid, stop))] if parent_pid else []
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        stopping.cancel()
        for watcher in watchers:
            watcher.cancel()
        serving.result()
        log.error("the edge server stopped by itself")
        return 1
    lifecycle: EdgeLifecycle = app.state.lifecycle
    lifecycle.begin_drain()
    log.info("edge shutting down: readiness NOT_SERVING, draining for %.1fs", settings.shutdown_drain)
    await asyncio.wait([serving], timeout=settings.shutdown_drain)
    server.should_exit = True
    await serving
    log.info("edge stopped")
    return 0
