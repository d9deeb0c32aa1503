"""Global positions commit in the order they are allocated, on PostgreSQL (the sequence-gap pitfall).

Transaction A allocates position N and stays open; an append B arrives meanwhile. If B
could take N+1 and commit first, a reader at the head would see N+1, move past it, and
never see N when A commits. Under the log's row lock B waits for A instead, so the reader
sees N and then N+1. Allocating positions anywhere but under that lock makes this fail.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest

from mesh.config import Settings
from services.events import store
from services.events.models import EventRow
from tests.services.events.support import pb, running_events

pytestmark = pytest.mark.postgres


async def test_a_reader_never_sees_a_later_position_before_an_earlier_one_commits(postgres_settings: Settings) -> None:
    async with running_events(postgres_settings) as ev:
        await ev.append("organizations/org_a/event_streams/call-0", 1)
        sessions = ev.service.host.database.sessions
        async with sessions.begin() as slow:
            # A: reserve position 2 under the lock, as an append does, and keep the transaction open.
            position = (await store.reserve(slow, 1)).position + 1
            assert position == 2
            now = datetime.datetime.now(datetime.UTC)
            slow.add(
                EventRow(
                    global_position=position, event_id=str(uuid.uuid4()), stream_id="slow-1", stream_version=0,
                    organization_id="org_a", type="call.completed", data=b"", data_schema="", event_metadata=b"",
                    occur_time=now, record_time=now, hidden=False,
                )
            )  # fmt: skip
            await slow.flush()
            # B: a real append, concurrently.
            fast = asyncio.create_task(ev.append("organizations/org_a/event_streams/call-1", 1))
            await asyncio.sleep(1.0)
            assert not fast.done(), "the second append committed while the first still held its position"
            seen = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/-"), metadata=ev.root())
            assert [e.global_position for e in seen.events] == [1] and seen.head_position == 1
        reply = await asyncio.wait_for(fast, 10)
        assert reply.global_position == 3
        seen = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/-"), metadata=ev.root())
        assert [e.global_position for e in seen.events] == [1, 2, 3]
