"""The server's deadline wrapper publishes the running call's deadline, and only while it runs."""

from __future__ import annotations

import time
from typing import Any

from interceptors.deadline import with_deadline
from mesh.resilience.deadlines import CALLER_DEADLINE
from tests.support.resilience import channel_to, echo_server, method


async def test_the_handler_sees_its_callers_deadline() -> None:
    seen: list[float | None] = []

    async def handler(request: bytes, context: Any) -> bytes:
        seen.append(CALLER_DEADLINE.get())
        return request

    async with echo_server({"Call": handler}, [with_deadline]) as port, channel_to(port) as channel:
        before = time.monotonic()
        await method(channel, "Call")(b"x", timeout=30)
        await method(channel, "Call")(b"x")
    with_timeout, without = seen
    assert with_timeout is not None and before < with_timeout <= time.monotonic() + 30.5  # wall clock rounding
    assert without is None
    assert CALLER_DEADLINE.get() is None
