"""Stopping background work in bounded time.

Every task the mesh starts has a stop that always finishes: cancel, then wait at most a
few seconds for the task to unwind, and say so in the log when it did not. A shutdown
that waits forever for a stuck task would hang ``make run``'s Ctrl-C, a rolling deploy
and the test suite alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

# How long a cancelled task gets to run its cleanup (close a stream, roll back).
UNWIND_SECONDS = 5.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], *, timeout: float = UNWIND_SECONDS) -> set[str]:
    """Cancel ``tasks`` and wait up to ``timeout`` seconds for them to finish.

    Returns:
        The names of the tasks still running after the wait (empty when all ended).

    """
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    stuck = await wait_for_tasks(pending, timeout=timeout)
    for name in sorted(stuck):
        log.warning("task %s did not finish within %.1fs of its cancellation", name, timeout)
    return stuck


async def wait_for_tasks(tasks: Iterable[asyncio.Task[object]], *, timeout: float) -> set[str]:
    """Wait up to ``timeout`` seconds for ``tasks`` to finish, without cancelling them.

    Returns:
        The names of the tasks still running after the wait (empty when all ended).

    """
    pending = {task for task in tasks if not task.done()}
    if pending:
        _done, pending = await asyncio.wait(pending, timeout=timeout)
    return {task.get_name() for task in pending}
