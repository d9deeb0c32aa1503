"""Property: with concurrent appends to many streams, every subscriber sees every event exactly once, in order.

Hypothesis draws the scenario — how many streams and writers, each writer's batches (stream,
size), how many subscribers and after which batch each one starts — and the test runs it on
PostgreSQL against a real events service: writers append concurrently (one task each),
subscribers join while the appends run, from the position the example started at. Every
subscriber must deliver exactly the events the log holds for the example, each once, in
global-position order, whether it read them during catch-up or live.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mesh.config import Settings
from tests.services.events.support import pb, proposed_event, running_events

pytestmark = pytest.mark.postgres


@dataclasses.dataclass(frozen=True)
class Scenario:
    streams: int
    writers: list[list[tuple[int, int]]]  # per writer: (stream index, batch size)
    subscriber_starts: list[int]  # per subscriber: how many batches of writer 0 to wait for first


@st.composite
def scenarios(draw: Any) -> Scenario:
    streams = draw(st.integers(1, 4))
    batch = st.tuples(st.integers(0, streams - 1), st.integers(1, 4))
    writers = draw(st.lists(st.lists(batch, min_size=1, max_size=5), min_size=1, max_size=4))
    starts = draw(st.lists(st.integers(0, len(writers[0])), min_size=1, max_size=3))
    return Scenario(streams, writers, starts)


async def _run(settings: Settings, scenario: Scenario, example: int) -> None:
    async with running_events(settings) as ev:
        base = await ev.stub.ReadAll(pb.ReadAllRequest(parent="organizations/-", max_count=1), metadata=ev.root())
        start_after = base.head_position
        expected_total = sum(size for writer in scenario.writers for _, size in writer)
        progress = [asyncio.Event() for _ in range(len(scenario.writers[0]) + 1)]
        progress[0].set()

        async def writer(index: int, batches: list[tuple[int, int]]) -> None:
            for number, (stream, size) in enumerate(batches):
                name = f"organizations/org_p/event_streams/prop{example}-{stream}"
                await ev.append(name, [proposed_event() for _ in range(size)])
                if index == 0:
                    progress[number + 1].set()
                await asyncio.sleep(0)

        async def subscriber(wait_for: int) -> list[int]:
            await progress[wait_for].wait()
            seen: list[int] = []
            call = ev.stub.SubscribeToAll(
                pb.SubscribeToAllRequest(parent="organizations/org_p", after_position=start_after),
                metadata=ev.admin("org_p"),
            )
            try:
                async for message in call:
                    if message.HasField("event"):
                        seen.append(message.event.global_position)
                        if len(seen) >= expected_total:
                            break
            finally:
                call.cancel()
            return seen

        subscribers = [asyncio.create_task(subscriber(start)) for start in scenario.subscriber_starts]
        await asyncio.gather(*(writer(i, batches) for i, batches in enumerate(scenario.writers)))
        results = await asyncio.wait_for(asyncio.gather(*subscribers), 30)
        stored = await ev.stub.ReadAll(
            pb.ReadAllRequest(parent="organizations/org_p", from_position=start_after + 1, max_count=1000),
            metadata=ev.admin("org_p"),
        )
        positions = [e.global_position for e in stored.events]
        assert len(positions) == expected_total
        assert positions == sorted(set(positions))
        for seen in results:
            assert seen == positions


_EXAMPLES = iter(range(1_000_000))


@hypothesis_settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(scenario=scenarios())
def test_every_subscriber_sees_every_event_exactly_once_in_global_order(
    postgres_settings: Settings, scenario: Scenario
) -> None:
    asyncio.run(_run(postgres_settings, scenario, next(_EXAMPLES)))
