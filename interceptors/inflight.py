"""Server side: know which RPC handlers are running, so a shutdown can wait for them.

grpc.aio's ``server.stop(grace)`` returns once the transport has finished every call, but a
handler whose call was cancelled (the client went away, the grace ran out) may still be
unwinding in its task: rolling back a transaction, closing a database connection. If the
service then disposes its database and the loop ends, that task waits forever for a
completion the stopped server will never deliver. :meth:`InFlightCalls.tracked` (a
wrapper of ``interceptors.chain``) records each handler's task; :meth:`InFlightCalls.drain`
refuses new calls and waits, bounded, for the recorded ones while the server can still
complete them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from interceptors.chain import Behaviour, Check, Guard, WrapperInterceptor
from mesh.errors import Unavailable
from mesh.tasks import cancel_and_wait, wait_for_tasks


class InFlightCalls(WrapperInterceptor):
    """Tracks running handler tasks; refuses new calls once draining.

    Compose :attr:`tracked` (a :class:`interceptors.chain.Guard`) into a ``ChainedServer``, or pass
    the object itself as a server interceptor.
    """

    def __init__(self) -> None:
        self.tracked = Guard(self._check_for)
        """The guard that records each call's task while it runs and refuses calls while draining."""
        super().__init__(self.tracked)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._forget = self._tasks.discard  # bound once, not per call
        self._draining = False

    @property
    def count(self) -> int:
        """How many handlers are running now."""
        return len(self._tasks)

    async def drain(self, grace: float, *, unwind: float = 2.0) -> set[str]:
        """Refuse new calls, give running ones ``grace`` seconds, then cancel what is left.

        Returns:
            Names of handler tasks still running after the cancellation (logged too).

        """
        self._draining = True
        await wait_for_tasks(set(self._tasks), timeout=grace)
        return await cancel_and_wait(set(self._tasks), timeout=unwind)

    def _enter(self, _request: Any = None, _context: Any = None) -> None:
        if self._draining:
            raise Unavailable("the service is shutting down; retry on another instance")
        task = asyncio.current_task()
        # The task is forgotten only when it has ended, after grpc has sent the call's status.
        if task is not None and task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._forget)

    def _check_for(self, _method: str, _behaviour: Behaviour) -> Check:
        return self._enter
