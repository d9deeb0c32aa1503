"""The call's metadata, read from grpc once per call and never served to another call."""

from __future__ import annotations

import asyncio

from mesh.call_facts import invocation_metadata


class CountingContext:
    """Stands in for a servicer context; counts how often its metadata was converted."""

    def __init__(self, *entries: tuple[str, str]) -> None:
        self.entries = entries
        self.reads = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        self.reads += 1
        return tuple(self.entries)


async def test_every_reader_of_one_call_gets_the_entries_converted_once():
    context = CountingContext(("authorization", "Bearer t"), ("x-request-id", "r-1"))
    first = invocation_metadata(context)
    assert invocation_metadata(context) is first
    assert first == (("authorization", "Bearer t"), ("x-request-id", "r-1"))
    assert context.reads == 1


async def test_another_call_in_the_same_task_reads_its_own_metadata():
    one, other = CountingContext(("x-request-id", "one")), CountingContext(("x-request-id", "other"))
    assert invocation_metadata(one) == (("x-request-id", "one"),)
    assert invocation_metadata(other) == (("x-request-id", "other"),)
    assert (one.reads, other.reads) == (1, 1)


async def test_calls_in_their_own_tasks_do_not_share_entries():
    contexts = [CountingContext(("x-request-id", str(n))) for n in range(3)]

    async def call(context: CountingContext) -> tuple[tuple[str, str | bytes], ...]:
        await asyncio.sleep(0)
        entries = invocation_metadata(context)
        await asyncio.sleep(0)
        assert invocation_metadata(context) is entries
        return entries

    results = await asyncio.gather(*(call(context) for context in contexts))
    assert [entries[0][1] for entries in results] == ["0", "1", "2"]
    assert [context.reads for context in contexts] == [1, 1, 1]


async def test_a_context_without_metadata_has_none():
    class Empty:
        def invocation_metadata(self) -> None:
            return None

    assert invocation_metadata(Empty()) == ()
