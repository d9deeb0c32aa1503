"""Fail an async test that leaves tasks running behind it.

A task still running when a test's fixtures have all been torn down is a shutdown that did
not finish: a handler outliving its server, a watcher nobody stopped, a call nobody awaited.
Left alone it runs into the loop's closing, where one waiting on a gRPC completion that will
never come hangs the whole suite. This check names it while the test is still known.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

# A task that is merely finishing its last step (a transport write) gets this long.
SETTLE_SECONDS = 1.0


def describe(task: asyncio.Task[object]) -> str:
    """A task's name, coroutine and where it waits, for the failure message."""
    out = io.StringIO()
    print(f"{task.get_name()}: {task.get_coro()!r}", file=out)
    for frame in task.get_stack(limit=8):
        print(f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=out)
    return out.getvalue()


@pytest.fixture
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Torn down last (added first to every async test): no task of the test may outlive it."""
    before = asyncio.all_tasks()
    yield
    leftovers = asyncio.all_tasks() - before - {asyncio.current_task()}
    if leftovers:
        await asyncio.wait(leftovers, timeout=SETTLE_SECONDS)
    still = [task for task in leftovers if not task.done()]
    if still:
        for task in still:
            task.cancel()
        pytest.fail(
            f"{len(still)} task(s) still running after the test and its fixtures finished:\n"
            + "\n".join(describe(task) for task in still),
            pytrace=False,
        )
