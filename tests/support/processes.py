"""Run Vocelio commands as real subprocesses for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port_offset(count: int = 24, base: int = 8000, metrics_offset: int = 1000) -> int:
    """An offset such that ports base+offset … base+offset+count-1 are all free right now.

    So are the metrics ports beside them (``metrics_offset`` higher, ``VOCELIO_METRICS_PORT_OFFSET``).

    Under pytest-xdist each worker draws from its own slice of the range, so two workers
    never pick the same ports for the meshes they start at the same moment.
    """
    low, high = _offset_range()
    for _ in range(200):
        offset = random.randrange(low, high, 100)
        sockets = []
        try:
            ports = range(base + offset, base + offset + count)
            for port in [*ports, *(port + metrics_offset for port in ports)]:
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
    """The current environment without VOCELIO_* settings, plus the overrides (one edge worker unless given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOCELIO_")}
    env["VOCELIO_EDGE_WORKERS"] = "1"
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


@contextlib.contextmanager
def served_mesh(
    tmp_path_factory: Any,
    *,
    ready_within: float = 90.0,
    probe_timeout: float = 10.0,
    log_path: pathlib.Path | None = None,
    **settings: str,
) -> Iterator[tuple[str, int]]:
    """``python -m runtime serve --all --with-edge`` on free ports: yields the edge's base URL and the port offset.

    ``settings`` are extra ``VOCELIO_*`` variables. It yields once the edge's ``/health`` reads 200
    (failing with the mesh's log if that takes longer than ``ready_within`` seconds, or the process
    exits), and stops the process afterwards, killing it if SIGTERM is not enough within 30 s.
    The process's output goes to ``log_path`` (a temporary file by default); it logs at
    WARNING unless ``settings`` name another ``VOCELIO_LOG_LEVEL``.
    """
    offset = free_port_offset()
    base = f"http://127.0.0.1:{8000 + offset}"
    log_path = log_path or tmp_path_factory.mktemp("log") / "mesh.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [PYTHON, "-m", "runtime", "serve", "--all", "--with-edge"],
            cwd=REPO,
            env=environment(
                **{
                    "VOCELIO_PORT_OFFSET": str(offset),
                    "VOCELIO_VAR_DIR": str(tmp_path_factory.mktemp("var")),
                    "VOCELIO_SHUTDOWN_DRAIN": "0",
                    "VOCELIO_LOG_LEVEL": "WARNING",
                    **settings,
                }
            ),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + ready_within
            with httpx.Client(base_url=base, timeout=probe_timeout) as probe:
                while True:
                    try:
                        if probe.get("/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"the mesh did not come up:\n{log_path.read_text()}")
                    time.sleep(0.2)
            yield base, offset
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def children_of(pid: int) -> list[int]:
    """The pids of the live (not zombie) direct children of ``pid``, from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            state, parent = text[text.rindex(")") + 2 :].split()[:2]
            if int(parent) == pid and state != "Z":
                children.append(int(entry))
    return children
