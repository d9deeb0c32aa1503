"""Run Vocelio commands as real subprocesses for end-to-end tests."""

from __future__ import annotations

import os
import random
import socket
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port_offset(count: int = 24, base: int = 8000) -> int:
    """An offset such that ports base+offset … base+offset+count-1 are all free right now."""
    for _ in range(200):
        offset = random.randrange(10000, 40000, 100)
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


def environment(**overrides: str) -> dict[str, str]:
    """The current environment without VOCELIO_* settings, plus the overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOCELIO_")}
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
