"""A service's metrics port: ``GET /metrics`` answers the process registry in Prometheus text.

A few lines of asyncio instead of a web framework or prometheus_client's thread: the
responder lives in the service's loop, starts and stops with the :class:`ServiceHost`,
and a stop always finishes (open connections are closed, their handlers cancelled and
awaited for a bounded time). The exposition is rendered in a worker thread, so a scrape
never stalls the loop's RPCs. One request per connection; anything but ``GET /metrics``
(or ``HEAD``) is a 404 or 405. Only scrapers on the service network reach this port: it
binds the service host, like the gRPC port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

_MAX_HEAD = 8 * 1024
_READ_TIMEOUT = 5.0


def process_metrics() -> bytes:
    """The exposition text of the process registry (``prometheus_client.REGISTRY``)."""
    return generate_latest(REGISTRY)


class MetricsEndpoint:
    """Serves ``render()`` at ``http://host:port/metrics`` until :meth:`stop`."""

    def __init__(self, host: str, port: int, render: Callable[[], bytes] = process_metrics) -> None:
        # gRPC spells an IPv6 host in brackets ("[::]"); sockets want it bare.
        self.host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        self.requested_port = port
        self.port = 0
        self._render = render
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen; returns the port (the actual one when ``port`` was 0).

        Raises:
            OSError: the port cannot be bound.

        """
        self._server = await asyncio.start_server(self._connected, self.host, self.requested_port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop listening and end every open connection, waiting at most ``timeout`` seconds."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in self._connections:
            task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
        if len(head) > _MAX_HEAD:
            writer.write(_response(431, b"request head too large\n"))
            return
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].split("?", 1)[0]
        if path != "/metrics":
            writer.write(_response(404, b"not found; metrics are at /metrics\n"))
        elif method not in ("GET", "HEAD"):
            writer.write(_response(405, b"use GET\n", allow="GET, HEAD"))
        else:
            body = await asyncio.to_thread(self._render)
            writer.write(_response(200, body, content_type=CONTENT_TYPE_LATEST, head_only=method == "HEAD"))
        await writer.drain()


def _response(
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    allow: str = "",
    head_only: bool = False,
) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large"}[status]
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if allow:
        lines.append(f"Allow: {allow}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
