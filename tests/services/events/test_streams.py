"""Streams, single events, stream subscriptions, falling behind, retention and shutdown."""

from __future__ import annotations

import asyncio
import datetime
import time

import grpc
import pytest

from mesh.config import Settings
from mesh.kit.clock import FixedClock
from services.events import store
from services.events.retention import Retention
from services.events.subscriptions import LIVE_WINDOW
from tests.services.events.support import error_info, pb, proposed_event, running_events, take
from vocelio.events.v1 import event_pb2, event_stream_pb2

Code = grpc.StatusCode
STREAM = "organizations/org_a/event_streams/call-1"
BACKWARDS = event_pb2.READ_DIRECTION_BACKWARDS


async def test_read_stream_forwards_backwards_and_paged(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM, 5)
        md = ev.admin("org_a")
        page = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM, max_count=2), metadata=md)
        assert [e.stream_version for e in page.events] == [0, 1] and page.next_version == 2
        assert not page.end_of_stream and page.last_version == 4
        rest = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM, from_version=2), metadata=md)
        assert [e.stream_version for e in rest.events] == [2, 3, 4] and rest.end_of_stream
        back = await ev.stub.ReadStream(
            pb.ReadStreamRequest(stream=STREAM, direction=BACKWARDS, max_count=2), metadata=md
        )
        assert [e.stream_version for e in back.events] == [4, 3] and back.next_version == 2
        back = await ev.stub.ReadStream(
            pb.ReadStreamRequest(stream=STREAM, direction=BACKWARDS, from_version=1), metadata=md
        )
        assert [e.stream_version for e in back.events] == [1, 0] and back.end_of_stream
        for caller, name in ((ev.admin("org_b"), STREAM), (md, "organizations/org_a/event_streams/none-1")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await ev.stub.ReadStream(pb.ReadStreamRequest(stream=name), metadata=caller)
            assert caught.value.code() == Code.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.ReadStream(pb.ReadStreamRequest(stream="organizations/org_a/agents/x"), metadata=md)
        assert caught.value.code() == Code.INVALID_ARGUMENT


async def test_get_and_batch_get_events(settings: Settings) -> None:
    async with running_events(settings) as ev:
        first, second = proposed_event(), proposed_event()
        await ev.append(STREAM, [first, second])
        md = ev.admin("org_a")
        name = f"organizations/org_a/events/{first.event_id}"
        got = await ev.stub.GetEvent(pb.GetEventRequest(name=name), metadata=md)
        assert got.event.event_id == first.event_id and got.event.stream_version == 0
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.GetEvent(
                pb.GetEventRequest(name=f"organizations/org_b/events/{first.event_id}"), metadata=ev.admin("org_b")
            )
        assert caught.value.code() == Code.NOT_FOUND
        missing = "organizations/org_a/events/00000000-0000-4000-8000-000000000000"
        names = [f"organizations/org_a/events/{second.event_id}", missing, name]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.BatchGetEvents(
                pb.BatchGetEventsRequest(parent="organizations/org_a", names=names), metadata=md
            )
        assert caught.value.code() == Code.NOT_FOUND
        batch = await ev.stub.BatchGetEvents(
            pb.BatchGetEventsRequest(parent="organizations/org_a", names=names, allow_missing=True), metadata=md
        )
        assert [e.event_id for e in batch.events] == [second.event_id, first.event_id]


async def test_get_list_truncate_and_delete_streams(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM, [proposed_event("call.completed") for _ in range(4)])
        await ev.append("organizations/org_a/event_streams/campaign-1", 1)
        await ev.append("organizations/org_b/event_streams/call-2", 1)
        md = ev.admin("org_a")
        stream = (await ev.stub.GetEventStream(pb.GetEventStreamRequest(name=STREAM), metadata=md)).event_stream
        assert (stream.category, stream.last_version, stream.event_count, stream.last_event_type) == (
            "call",
            3,
            4,
            "call.completed",
        )
        assert stream.state == event_stream_pb2.EVENT_STREAM_STATE_ACTIVE and stream.last_global_position == 4
        listed = await ev.stub.ListEventStreams(pb.ListEventStreamsRequest(parent="organizations/org_a"), metadata=md)
        assert [s.name for s in listed.event_streams] == [
            "organizations/org_a/event_streams/call-1",
            "organizations/org_a/event_streams/campaign-1",
        ]
        paged = await ev.stub.ListEventStreams(
            pb.ListEventStreamsRequest(parent="organizations/-", page_size=2), metadata=ev.root()
        )
        assert len(paged.event_streams) == 2 and paged.next_page_token
        rest = await ev.stub.ListEventStreams(
            pb.ListEventStreamsRequest(parent="organizations/-", page_size=2, page_token=paged.next_page_token),
            metadata=ev.root(),
        )
        assert [s.name for s in rest.event_streams] == ["organizations/org_a/event_streams/campaign-1"]
        filtered = await ev.stub.ListEventStreams(
            pb.ListEventStreamsRequest(parent="organizations/org_a", filter='category = "campaign"'), metadata=md
        )
        assert [s.category for s in filtered.event_streams] == ["campaign"]
        # Truncation and deletion are platform operations.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.TruncateEventStream(pb.TruncateEventStreamRequest(name=STREAM, before_version=2), metadata=md)
        assert caught.value.code() == Code.PERMISSION_DENIED
        truncated = await ev.stub.TruncateEventStream(
            pb.TruncateEventStreamRequest(name=STREAM, before_version=2), metadata=ev.root()
        )
        assert truncated.event_stream.first_readable_version == 2 and truncated.event_stream.event_count == 2
        read = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM, from_version=0), metadata=md)
        assert [e.stream_version for e in read.events] == [2, 3]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.TruncateEventStream(
                pb.TruncateEventStreamRequest(name=STREAM, before_version=9), metadata=ev.root()
            )
        assert caught.value.code() == Code.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.DeleteEventStream(
                pb.DeleteEventStreamRequest(name=STREAM, expected_version=1), metadata=ev.root()
            )
        assert caught.value.code() == Code.ABORTED
        await ev.stub.DeleteEventStream(
            pb.DeleteEventStreamRequest(name=STREAM, expected_version=3), metadata=ev.root()
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM), metadata=md)
        assert caught.value.code() == Code.NOT_FOUND and error_info(caught.value).reason == "STREAM_DELETED"  # type: ignore[union-attr]
        everything = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_a"), metadata=md)
        assert [e.stream for e in everything.events] == ["organizations/org_a/event_streams/campaign-1"]
        hidden = await ev.stub.ListEventStreams(pb.ListEventStreamsRequest(parent="organizations/org_a"), metadata=md)
        assert len(hidden.event_streams) == 1
        shown = await ev.stub.ListEventStreams(
            pb.ListEventStreamsRequest(parent="organizations/org_a", show_deleted=True), metadata=md
        )
        assert len(shown.event_streams) == 2
        # A later append revives it; versions continue and the old events stay hidden.
        revived = await ev.append(STREAM, 1, expected_state=pb.EXPECTED_STREAM_STATE_NO_STREAM)
        assert revived.current_version == 4
        read = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM), metadata=md)
        assert [e.stream_version for e in read.events] == [4]


async def test_subscribe_to_stream_catches_up_then_follows(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM, 2)
        md = ev.admin("org_a")
        call = ev.stub.SubscribeToStream(pb.SubscribeToStreamRequest(stream=STREAM), metadata=md)
        later = ev.stub.SubscribeToStream(
            pb.SubscribeToStreamRequest(stream="organizations/org_a/event_streams/later-1"), metadata=md
        )
        try:
            got = await take(call, 3)
            assert [m.event.stream_version for m in got[:2]] == [0, 1]
            assert got[2].caught_up.stream_version == 1
            assert (await take(later, 1))[0].caught_up.stream_version == -1
            await ev.append("organizations/org_a/event_streams/other-1", 1)
            await ev.append(STREAM, 1)
            await ev.append("organizations/org_a/event_streams/later-1", 1)
            assert (await asyncio.wait_for(take(call, 1), 10))[0].event.stream_version == 2
            assert (await asyncio.wait_for(take(later, 1), 10))[0].event.stream == (
                "organizations/org_a/event_streams/later-1"
            )
        finally:
            call.cancel()
            later.cancel()
        foreign = ev.stub.SubscribeToStream(pb.SubscribeToStreamRequest(stream=STREAM), metadata=ev.admin("org_b"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await take(foreign, 1)
        assert caught.value.code() == Code.NOT_FOUND


async def test_a_live_subscriber_that_falls_a_window_behind_catches_up_again(settings: Settings) -> None:
    async with running_events(settings) as ev:
        call = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/org_a"), metadata=ev.admin("org_a")
        )
        try:
            assert (await take(call, 1))[0].HasField("caught_up")
            await ev.append(STREAM, LIVE_WINDOW)
            await ev.append(STREAM, 3)
            got = await asyncio.wait_for(take(call, LIVE_WINDOW + 5), 30)
            kinds = [m.WhichOneof("message") for m in got]
            assert kinds[0] == "fell_behind" and kinds.count("caught_up") == 1
            positions = [m.event.global_position for m in got if m.HasField("event")]
            assert positions == list(range(1, LIVE_WINDOW + 4))
        finally:
            call.cancel()


async def test_retention_archives_old_events_and_reads_into_them_say_so(settings: Settings) -> None:
    clock = FixedClock()
    async with running_events(settings, clock=clock) as ev:
        await ev.append(STREAM, 3)
        clock.advance(datetime.timedelta(days=10))
        await ev.append(STREAM, 2)
        database = ev.service.host.database
        retention = Retention(database.sessions, store.WriteGate(database.kind), clock, retention_days=5, interval=60)
        done = await retention.run_once()
        assert (done.archived, done.watermark) == (3, 3)
        md = ev.admin("org_a")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_a", from_position=1), metadata=md)
        assert caught.value.code() == Code.OUT_OF_RANGE
        info = error_info(caught.value)
        assert info is not None and info.reason == "EVENTS_ARCHIVED" and info.metadata["first_readable_position"] == "4"
        assert "first readable position is 4" in (caught.value.details() or "")
        start = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_a"), metadata=md)
        assert [e.global_position for e in start.events] == [4, 5]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM, from_version=0), metadata=md)
        assert caught.value.code() == Code.OUT_OF_RANGE
        assert error_info(caught.value).metadata["first_readable_version"] == "3"  # type: ignore[union-attr]
        read = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM), metadata=md)
        assert [e.stream_version for e in read.events] == [3, 4]
        back = await ev.stub.ReadStream(pb.ReadStreamRequest(stream=STREAM, direction=BACKWARDS), metadata=md)
        assert [e.stream_version for e in back.events] == [4, 3] and not back.end_of_stream
        call = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/org_a", after_position=1), metadata=md
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await take(call, 1)
        assert caught.value.code() == Code.OUT_OF_RANGE
        # Truncated events are scavenged by the same pass.
        await ev.stub.TruncateEventStream(
            pb.TruncateEventStreamRequest(name=STREAM, before_version=4), metadata=ev.root()
        )
        assert (await retention.run_once()).scavenged == 1


async def test_retention_archives_a_prefix_of_the_log_and_stops_at_the_first_recent_event(
    settings: Settings,
) -> None:
    clock = FixedClock()
    async with running_events(settings, clock=clock) as ev:
        await ev.append(STREAM, 2)
        clock.advance(datetime.timedelta(days=10))
        await ev.append(STREAM, 1)
        clock.advance(datetime.timedelta(days=-9))  # the clock stepped back: old-looking events after a recent one
        await ev.append(STREAM, 2)
        clock.advance(datetime.timedelta(days=9))
        database = ev.service.host.database
        retention = Retention(database.sessions, store.WriteGate(database.kind), clock, retention_days=5, interval=60)
        done = await retention.run_once()
        # Positions 4 and 5 are "older" than the cut-off, but archiving them would leave a hole at 3.
        assert (done.archived, done.watermark) == (2, 2)
        start = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_a"), metadata=ev.admin("org_a"))
        assert [e.global_position for e in start.events] == [3, 4, 5]


async def test_shutdown_ends_subscriptions_at_once(settings: Settings) -> None:
    async with running_events(settings) as ev:
        call = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/org_a"), metadata=ev.admin("org_a")
        )
        assert (await take(call, 1))[0].HasField("caught_up")
        started = time.monotonic()
        await ev.service.host.shutdown()
        assert time.monotonic() - started < ev.service.host.settings.shutdown_grace
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await take(call, 1)
        assert caught.value.code() == Code.UNAVAILABLE
