"""N writers appending to one stream with expected versions: exactly one winner per version.

Every writer has its own channel (its own HTTP/2 connection) and the service its pool of
database connections, so the appends really race; on PostgreSQL the store's advisory lock
decides, on SQLite its single writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import grpc

from mesh.config import Settings
from tests.services.events.support import Stub, error_info, pb, proposed_event, running_events

WRITERS = 6
ROUNDS = 8
STREAM = "organizations/org_a/event_streams/order-1"


async def test_exactly_one_writer_wins_each_expected_version(settings: Settings) -> None:
    async with running_events(settings) as ev, contextlib.AsyncExitStack() as stack:
        stubs = []
        for _ in range(WRITERS):
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{ev.service.host.port}"))
            stubs.append(Stub(channel))
        winners: Counter[int] = Counter()
        conflicts: list[tuple[grpc.StatusCode, str, int]] = []

        async def attempt(stub: Stub, expected: int) -> bool:
            request = pb.AppendToStreamRequest(stream=STREAM, expected_revision=expected, events=[proposed_event()])
            try:
                reply = await stub.AppendToStream(request, metadata=ev.mesh, timeout=20)
            except grpc.aio.AioRpcError as error:
                info = error_info(error)
                conflicts.append(
                    (error.code(), info.reason if info else "", int(info.metadata["actual"]) if info else 0)
                )
                return False
            assert reply.current_version == expected + 1
            winners[expected] += 1
            return True

        for expected in range(-1, ROUNDS - 1):
            outcomes = await asyncio.gather(*(attempt(stub, expected) for stub in stubs))
            assert outcomes.count(True) == 1, (expected, outcomes)
            assert conflicts == [(grpc.StatusCode.ABORTED, "WRONG_EXPECTED_VERSION", expected + 1)] * (WRITERS - 1)
            conflicts.clear()
        assert winners == Counter({v: 1 for v in range(-1, ROUNDS - 1)})
        read = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM), metadata=ev.admin("org_a"))
        assert [e.stream_version for e in read.events] == list(range(ROUNDS))


async def test_free_running_writers_never_share_a_version(settings: Settings) -> None:
    """Each writer loops: read the version, append expecting it, retry on conflict; every append lands once."""
    async with running_events(settings) as ev:
        appended: list[str] = []

        async def writer(count: int) -> None:
            for _ in range(count):
                while True:
                    current = await ev.stub.GetEventStream(
                        pb.GetEventStreamRequest(name=STREAM), metadata=ev.admin("org_a")
                    )
                    event = proposed_event()
                    try:
                        await ev.append(STREAM, [event], expected_revision=current.event_stream.last_version)
                    except grpc.aio.AioRpcError as error:
                        if error.code() != grpc.StatusCode.ABORTED:
                            raise
                        continue
                    appended.append(event.event_id)
                    break

        await ev.append(STREAM, 1, expected_state=pb.EXPECTED_STREAM_STATE_NO_STREAM)
        await asyncio.gather(*(writer(4) for _ in range(WRITERS)))
        read = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM), metadata=ev.admin("org_a"))
        assert [e.stream_version for e in read.events] == list(range(1 + 4 * WRITERS))
        assert sorted(e.event_id for e in read.events[1:]) == sorted(appended)
