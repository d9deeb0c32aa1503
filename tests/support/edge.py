"""Run the REST edge for real (uvicorn on port 0) in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(app: Starlette, **config: Any) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1 and yield its port."""
    config.setdefault("proxy_headers", False)
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, **config))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await task
