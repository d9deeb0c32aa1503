"""Run Vocelio commands as real subprocesses for end-to-end tests."""

from __future__ import annotations

import os
import random
import socket
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port_offset(count: int = 24, base: int = 8000) -> int:
    """An offset such that ports base+offset … base+offset+count-1 are all free right now.

    Under pytest-xdist each worker draws from its own slice of the range, so two workers
    never pick the same ports for the meshes they start at the same moment.
    """
    low, high = _offset_range()
    for _ in range(200):
        offset = random.randrange(low, high, 100)
        sockets = []
        try:
            for port in range(base + offset, base + offset + count):
                sock = socket.socket()
                sockets.append(sock)  # closed below whether or not the bind works
                sock.bind(("127.0.0.1", port))
            return offset
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free port range found")


def _offset_range(low: int = 10000, high: int = 40000) -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", …
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or workers <= 1:
        return low, high
    width = (high - low) // workers // 100 * 100
    start = low + int(worker[2:]) * width
    return start, start + width


def environment(**overrides: str) -> dict[str, str]:
    """The current environment without VOCELIO_* settings, plus the overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOCELIO_")}
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
