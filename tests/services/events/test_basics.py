"""The events service's core over a real server: append, ReadAll, SubscribeToAll, checkpoints."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from mesh.config import Settings
from tests.services.events.support import error_info, pb, proposed_event, running_events, take
from vocelio.events.v1 import event_pb2

Code = grpc.StatusCode
STREAM_A = "organizations/org_a/event_streams/call-1"


async def test_append_then_read_all_in_order(settings: Settings) -> None:
    async with running_events(settings) as ev:
        first = await ev.append(STREAM_A, 2, expected_state=pb.EXPECTED_STREAM_STATE_NO_STREAM)
        assert (first.current_version, first.global_position, first.already_appended) == (1, 2, False)
        second = await ev.append(STREAM_A, 1, expected_revision=1)
        assert (second.current_version, second.global_position) == (2, 3)
        reply = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_a"), metadata=ev.admin("org_a"))
        assert [e.global_position for e in reply.events] == [1, 2, 3]
        assert [e.stream_version for e in reply.events] == [0, 1, 2]
        assert reply.events[0].stream == STREAM_A
        assert reply.events[0].name == f"organizations/org_a/events/{reply.events[0].event_id}"
        assert dict(reply.events[0].data) == {"n": 1.0}
        assert reply.end_of_log and reply.head_position == 3 and reply.next_position == 4


async def test_wrong_expected_version_is_aborted_with_the_current_version(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM_A, 3)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.append(STREAM_A, 1, expected_revision=0)
        assert caught.value.code() == Code.ABORTED
        info = error_info(caught.value)
        assert info is not None and info.reason == "WRONG_EXPECTED_VERSION"
        assert dict(info.metadata) == {"stream": STREAM_A, "expected": "0", "actual": "2"}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.append(STREAM_A, 1, expected_state=pb.EXPECTED_STREAM_STATE_NO_STREAM)
        assert caught.value.code() == Code.ABORTED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.append(
                "organizations/org_a/event_streams/new-1", 1, expected_state=pb.EXPECTED_STREAM_STATE_STREAM_EXISTS
            )
        assert caught.value.code() == Code.ABORTED
        assert (
            await ev.append(STREAM_A, 1, expected_state=pb.EXPECTED_STREAM_STATE_STREAM_EXISTS)
        ).current_version == 3


async def test_append_is_idempotent_by_event_id(settings: Settings) -> None:
    async with running_events(settings) as ev:
        batch = [proposed_event(), proposed_event()]
        first = await ev.append(STREAM_A, batch, expected_revision=-1)
        again = await ev.append(STREAM_A, batch, expected_revision=-1)
        assert again.already_appended and (again.current_version, again.global_position) == (1, 2)
        assert not first.already_appended
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.append(STREAM_A, [batch[1], proposed_event()])
        assert caught.value.code() == Code.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.append("organizations/org_a/event_streams/other-1", [batch[0]])
        assert caught.value.code() == Code.ALREADY_EXISTS
        reply = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/-"), metadata=ev.root())
        assert len(reply.events) == 2


async def test_bad_events_are_invalid_and_nothing_is_written(settings: Settings) -> None:
    async with running_events(settings) as ev:
        bad_id = proposed_event()
        bad_id.event_id = "not-a-uuid"
        for events in (
            [proposed_event(), bad_id],
            [proposed_event("Bad Type")],
            [proposed_event("agent.created", {"nope": 1}, data_schema="vocelio.agents.v1.AgentCreatedEvent")],
            [proposed_event("agent.created", data_schema="vocelio.agents.v1.AgentDeletedEvent")],
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await ev.append(STREAM_A, events)
            assert caught.value.code() == Code.INVALID_ARGUMENT, events
        reply = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/-"), metadata=ev.root())
        assert list(reply.events) == [] and reply.head_position == 0


async def test_typed_payload_is_accepted(settings: Settings) -> None:
    async with running_events(settings) as ev:
        typed = proposed_event(
            "agent.created",
            {"agent": {"name": "organizations/org_a/agents/a1"}},
            data_schema="vocelio.agents.v1.AgentCreatedEvent",
        )
        await ev.append("organizations/org_a/event_streams/agents-org_a-a1", [typed])
        reply = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_a"), metadata=ev.admin("org_a"))
        assert reply.events[0].data_schema == "vocelio.agents.v1.AgentCreatedEvent"


async def test_stream_owner_is_fixed_by_the_first_append(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append("call-9", 1, organization_id="org_a")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.append("organizations/org_b/event_streams/call-9", 1)
        assert caught.value.code() == Code.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.append("event_streams/call-9", 1)
        assert caught.value.code() == Code.FAILED_PRECONDITION


async def test_read_all_is_scoped_and_filtered(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append("organizations/org_a/event_streams/call-1", [proposed_event("call.completed")])
        await ev.append("organizations/org_b/event_streams/call-2", [proposed_event("call.completed")])
        await ev.append("organizations/org_a/event_streams/campaign-1", [proposed_event("campaign.paused")])
        await ev.append("event_streams/system-1", [proposed_event("system.started")])
        mine = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_a"), metadata=ev.admin("org_a"))
        assert [e.global_position for e in mine.events] == [1, 3]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/org_b"), metadata=ev.admin("org_a"))
        assert caught.value.code() == Code.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.ReadAll(
                pb.ReadAllRequest(parent="organizations/org_a", organization_id="org_b"), metadata=ev.admin("org_a")
            )
        assert caught.value.code() == Code.PERMISSION_DENIED
        everything = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/-"), metadata=ev.root())
        assert len(everything.events) == 4
        one = await ev.stub.ReadAll(
            pb.ReadAllRequest(parent="organizations/-", organization_id="org_b"), metadata=ev.root()
        )
        assert [e.global_position for e in one.events] == [2]
        calls = await ev.stub.ReadAll(
            pb.ReadAllRequest(
                parent="organizations/-", event_filter=event_pb2.EventFilter(event_type_prefixes=["call."])
            ),
            metadata=ev.root(),
        )
        assert [e.global_position for e in calls.events] == [1, 2]
        by_stream = await ev.stub.ReadAll(
            pb.ReadAllRequest(
                parent="organizations/-", max_count=1, event_filter=event_pb2.EventFilter(stream_prefixes=["campaign-"])
            ),
            metadata=ev.root(),
        )
        assert [e.global_position for e in by_stream.events] == [3] and by_stream.next_position == 4
        skipped = await ev.stub.ReadAll(
            pb.ReadAllRequest(
                parent="organizations/-",
                from_position=4,
                event_filter=event_pb2.EventFilter(stream_prefixes=["campaign-"]),
            ),
            metadata=ev.root(),
        )
        assert list(skipped.events) == [] and skipped.next_position == 5 and skipped.end_of_log
        backwards = await ev.stub.ReadAll(
            pb.ReadAllRequest(parent="organizations/-", direction=event_pb2.READ_DIRECTION_BACKWARDS, max_count=3),
            metadata=ev.root(),
        )
        assert [e.global_position for e in backwards.events] == [4, 3, 2] and backwards.next_position == 1


async def test_subscribe_to_all_catches_up_then_goes_live_without_gap_or_duplicate(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM_A, 3)
        call = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/org_a"), metadata=ev.admin("org_a")
        )
        try:
            head = await take(call, 4)
            assert [m.WhichOneof("message") for m in head] == ["event", "event", "event", "caught_up"]
            assert head[3].caught_up.global_position == 3
            await ev.append(STREAM_A, 2)
            await ev.append("organizations/org_b/event_streams/call-x", 1)
            await ev.append(STREAM_A, 1)
            live = await asyncio.wait_for(take(call, 3), 10)
            assert [m.event.global_position for m in live] == [4, 5, 7]
        finally:
            call.cancel()


async def test_subscribe_from_a_position_and_live_only(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM_A, 3)
        after = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/org_a", after_position=2), metadata=ev.admin("org_a")
        )
        live = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/org_a", live_only=True), metadata=ev.admin("org_a")
        )
        try:
            got = await take(after, 2)
            assert got[0].event.global_position == 3 and got[1].HasField("caught_up")
            first = await take(live, 1)
            assert first[0].caught_up.global_position == 3
            await ev.append(STREAM_A, 1)
            assert (await take(live, 1))[0].event.global_position == 4
            assert (await take(after, 1))[0].event.global_position == 4
        finally:
            after.cancel()
            live.cancel()


async def test_filtered_subscription_sends_checkpoints(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM_A, 5)
        call = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(
                parent="organizations/-",
                checkpoint_interval=2,
                event_filter=event_pb2.EventFilter(event_type_prefixes=["nothing."]),
            ),
            metadata=ev.root(),
        )
        try:
            got = await take(call, 2)
            assert got[0].checkpoint.global_position == 5
            assert got[1].caught_up.global_position == 5
        finally:
            call.cancel()


async def test_checkpoints_save_get_list_delete(settings: Settings) -> None:
    async with running_events(settings) as ev:
        name = "organizations/org_a/consumer_checkpoints/crm-sync"
        md = ev.admin("org_a")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.GetConsumerCheckpoint(pb.GetConsumerCheckpointRequest(name=name), metadata=md)
        assert caught.value.code() == Code.NOT_FOUND
        saved = (
            await ev.stub.SaveConsumerCheckpoint(
                pb.SaveConsumerCheckpointRequest(name=name, global_position=5, consumer_state="s"), metadata=md
            )
        ).consumer_checkpoint
        assert (saved.global_position, saved.save_count, saved.organization_id) == (5, 1, "org_a")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.SaveConsumerCheckpoint(
                pb.SaveConsumerCheckpointRequest(name=name, global_position=3), metadata=md
            )
        assert caught.value.code() == Code.FAILED_PRECONDITION
        assert error_info(caught.value).reason == "CHECKPOINT_REWIND"  # type: ignore[union-attr]
        moved = (
            await ev.stub.SaveConsumerCheckpoint(
                pb.SaveConsumerCheckpointRequest(name=name, global_position=9, etag=saved.etag), metadata=md
            )
        ).consumer_checkpoint
        assert moved.global_position == 9 and moved.save_count == 2
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.SaveConsumerCheckpoint(
                pb.SaveConsumerCheckpointRequest(name=name, global_position=10, etag=saved.etag), metadata=md
            )
        assert caught.value.code() == Code.ABORTED
        rewound = (
            await ev.stub.SaveConsumerCheckpoint(
                pb.SaveConsumerCheckpointRequest(name=name, global_position=1, allow_rewind=True), metadata=md
            )
        ).consumer_checkpoint
        assert rewound.global_position == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.GetConsumerCheckpoint(pb.GetConsumerCheckpointRequest(name=name), metadata=ev.admin("org_b"))
        assert caught.value.code() == Code.NOT_FOUND
        listed = await ev.stub.ListConsumerCheckpoints(
            pb.ListConsumerCheckpointsRequest(parent="organizations/org_a"), metadata=md
        )
        assert [c.name for c in listed.consumer_checkpoints] == [name]
        await ev.stub.SaveConsumerCheckpoint(
            pb.SaveConsumerCheckpointRequest(name="consumer_checkpoints/billing.rater", global_position=2),
            metadata=ev.mesh,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.SaveConsumerCheckpoint(
                pb.SaveConsumerCheckpointRequest(name="consumer_checkpoints/x-y-z", global_position=2), metadata=md
            )
        assert caught.value.code() == Code.NOT_FOUND
        everything = await ev.stub.ListConsumerCheckpoints(
            pb.ListConsumerCheckpointsRequest(parent="organizations/-", page_size=1), metadata=ev.root()
        )
        assert len(everything.consumer_checkpoints) == 1 and everything.next_page_token
        await ev.stub.DeleteConsumerCheckpoint(pb.DeleteConsumerCheckpointRequest(name=name), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ev.stub.DeleteConsumerCheckpoint(pb.DeleteConsumerCheckpointRequest(name=name), metadata=md)
        assert caught.value.code() == Code.NOT_FOUND


async def test_subscribe_resumes_from_a_consumer_checkpoint(settings: Settings) -> None:
    async with running_events(settings) as ev:
        await ev.append(STREAM_A, 4)
        name = "organizations/org_a/consumer_checkpoints/proj.overview"
        md = ev.admin("org_a")
        await ev.stub.SaveConsumerCheckpoint(
            pb.SaveConsumerCheckpointRequest(name=name, global_position=2), metadata=md
        )
        call = ev.stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/org_a", consumer_checkpoint=name), metadata=md
        )
        try:
            got = await take(call, 3)
            assert [m.event.global_position for m in got[:2]] == [3, 4] and got[2].HasField("caught_up")
        finally:
            call.cancel()
