"""A child process's lifeline to its parent: it must never outlive it.

Two mechanisms, both used: :func:`stop_when_parent_dies` asks Linux to send SIGTERM when
the parent dies, even by SIGKILL (no polling; Linux only), and :func:`stop_when_orphaned`
polls the parent id, for processes started with ``--exit-with-parent PID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a child gets when its parent dies


def stop_when_parent_dies() -> None:
    """In a forked child (``preexec_fn``): SIGTERM when the parent dies. Elsewhere than Linux, nothing."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def stop_when_orphaned(parent_pid: int, stop: asyncio.Event, interval: float = 1.0) -> None:
    """Set ``stop`` once this process's parent is no longer ``parent_pid``; return when ``stop`` is set."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("the parent process (pid %d) is gone; stopping", parent_pid)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
