"""Server side: publish the running call's deadline, so outgoing calls can inherit it.

gRPC Python does not propagate deadlines by itself. This guard reads the call's
remaining time once, when the handler starts, and stores the absolute instant in
:data:`mesh.resilience.deadlines.CALLER_DEADLINE`; ``interceptors/client_deadline.py`` gives
every call the handler makes downstream what is left of it (less a margin). One
``time_remaining()`` and one context variable per call: it sits outside authentication so
even the identity look-ups authentication makes inherit the budget.

It is a :class:`interceptors.chain.Guard` (it shares a layer with the guards next to it) and
so does not reset the variable when the call ends: grpc.aio runs each call in a task of its
own, whose context ends with it, and a call without a deadline starts with the variable
unset there.
"""

from __future__ import annotations

import time
from typing import Any

from interceptors.chain import Behaviour, Check, Guard
from mesh.resilience.deadlines import CALLER_DEADLINE


def _publish(_request: Any, context: Any) -> None:
    remaining = context.time_remaining()
    if remaining is not None:
        CALLER_DEADLINE.set(time.monotonic() + remaining)


def _publisher(_method: str, _behaviour: Behaviour) -> Check:
    return _publish


with_deadline = Guard(_publisher)
"""The guard that publishes the call's deadline in ``CALLER_DEADLINE`` for the rest of the call."""
