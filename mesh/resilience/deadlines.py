"""Deadline budgets: the running call's deadline, and how much of it an outgoing call gets.

The server wrapper ``interceptors/deadline.py`` publishes the deadline of the call a
handler is serving in :data:`CALLER_DEADLINE` (a ``time.monotonic()`` instant, ``None``
when the caller set none); ``interceptors/client_deadline.py`` gives each outgoing call
:func:`outgoing_timeout`. Each handler runs in its own task, so the variable is per call.
"""

from __future__ import annotations

import contextvars

CALLER_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("vocelio_caller_deadline", default=None)
"""The ``time.monotonic()`` instant the call being served must end by, or ``None``."""


class TooLittleTime(Exception):
    """The caller's remaining time, less the margin, leaves nothing for an outgoing call."""

    def __init__(self, remaining: float, margin: float) -> None:
        super().__init__(
            f"only {max(remaining, 0.0) * 1000:.0f} ms of the caller's deadline remain "
            f"(keeping a {margin * 1000:.0f} ms margin); the call was not sent"
        )
        self.remaining = remaining


def outgoing_timeout(
    *, explicit: float | None, default: float | None, deadline: float | None, now: float, margin: float
) -> float | None:
    """The timeout of an outgoing call: the least of its own, the method's default and the caller's budget.

    Args:
        explicit: the timeout the code passed to the stub, if any.
        default: the method's default deadline (``mesh.service_config``), if any.
        deadline: the caller's deadline (:data:`CALLER_DEADLINE`), if any.
        now: the current ``time.monotonic()``.
        margin: seconds kept back from the caller's remaining time.

    Returns:
        Seconds, or ``None`` for no deadline at all.

    Raises:
        TooLittleTime: the caller's deadline leaves no more than the margin.

    """
    # gRPC applies the service config's timeout as a ceiling on the stub's, so the least wins.
    timeout = default if explicit is None else explicit if default is None or explicit < default else default
    if deadline is None:
        return timeout
    remaining = deadline - now
    budget = remaining - margin
    if budget <= 0:
        raise TooLittleTime(remaining, margin)
    return budget if timeout is None or budget < timeout else timeout
