"""A TCP proxy that a test can cut and restore, to take a dependency "down" for real."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards a local port to a target; ``cut()`` drops every connection and stops listening."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen (on the same port as before, after a cut) and return the port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def cut(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, target_writer))
        await asyncio.gather(
            _pipe(reader, target_writer, self._writers), self._responses(target_reader, writer, target_writer)
        )

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: asyncio.StreamWriter
    ) -> None:
        """Pass the target's bytes back to the client (``upstream`` is the connection to the target)."""
        await _pipe(reader, writer, self._writers)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, writers: set[asyncio.StreamWriter]) -> None:
    """Copy bytes from ``reader`` to ``writer`` until either side closes."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writers.discard(writer)
        with contextlib.suppress(Exception):
            writer.transport.abort()


class ResponseDroppingProxy(TcpProxy):
    """Forwards HTTP/2 (gRPC) to a target, but resets the connection instead of passing on the first responses.

    The first ``drops`` times the server starts a response (a HEADERS frame on a stream), the
    request has reached the server and been handled: the proxy then resets both sides, so the
    client sees UNAVAILABLE for a call the server completed — the case a request id must make
    safe to retry. Later responses pass through.
    """

    def __init__(self, target_host: str, target_port: int, drops: int) -> None:
        super().__init__(target_host, target_port)
        self.drops = drops
        self.dropped = 0

    async def stop(self) -> None:
        """Stop listening and reset every open connection."""
        await self.cut()

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: asyncio.StreamWriter
    ) -> None:
        """Pass server frames on one by one; on a response HEADERS frame that must be dropped, reset both."""
        try:
            # The server speaks first with its SETTINGS frame; there is no connection preface this way.
            while True:
                header = await reader.readexactly(9)
                length = int.from_bytes(header[:3], "big")
                frame_type = header[3]
                stream_id = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                payload = await reader.readexactly(length)
                if frame_type == 0x1 and stream_id != 0 and self.dropped < self.drops:
                    self.dropped += 1
                    writer.transport.abort()
                    upstream.transport.abort()
                    return
                writer.write(header + payload)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
