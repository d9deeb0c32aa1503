"""Several edge worker processes on one port, as real processes: each answers, none outlives the parent."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
from collections.abc import Callable

import httpx

from tests.support.processes import PYTHON, REPO, children_of, environment, free_port_offset


async def _edge(tmp_path: pathlib.Path, workers: int) -> tuple[asyncio.subprocess.Process, str]:
    offset = free_port_offset(count=1)
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "gateway_rest",
        "--mesh",
        cwd=REPO,
        env=environment(
            VOCELIO_PORT_OFFSET=str(offset),
            VOCELIO_VAR_DIR=str(tmp_path),
            VOCELIO_EDGE_WORKERS=str(workers),
            VOCELIO_SHUTDOWN_DRAIN="0.1",
            VOCELIO_SHUTDOWN_GRACE="1",
        ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{8000 + offset}"


async def _live(base: str, limit: float = 45.0) -> None:
    """Poll /livez on fresh connections until it answers 200 (a bound, not a measurement)."""
    async with asyncio.timeout(limit), httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while True:
            try:
                if (await client.get(f"{base}/livez", timeout=5)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def _eventually(condition: Callable[[], bool], limit: float = 45.0) -> None:
    """Wait until ``condition()`` holds (a generous ceiling, not a timing claim)."""
    async with asyncio.timeout(limit):
        while True:
            if condition():
                return
            await asyncio.sleep(0.1)


async def _workers(parent: int, count: int) -> list[int]:
    await _eventually(lambda: len(children_of(parent)) == count)
    return children_of(parent)


def _environ_of(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        return environ.read().split(b"\0")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


async def _until_gone(pids: list[int]) -> None:
    await _eventually(lambda: not any(_alive(pid) for pid in pids), limit=30)


async def test_workers_share_one_port_are_restarted_and_stop_with_sigterm(tmp_path):
    process, base = await _edge(tmp_path, workers=2)
    workers: list[int] = []
    try:
        workers = await _workers(process.pid, 2)
        await _live(base)
        metrics_dirs = list(tmp_path.glob("edge-metrics-*"))
        assert len(metrics_dirs) == 1  # PROMETHEUS_MULTIPROC_DIR of this run
        for pid in workers:
            variables = _environ_of(pid)
            assert f"PROMETHEUS_MULTIPROC_DIR={metrics_dirs[0]}".encode() in variables

        # Each worker answers on the one port: with the other one stopped, it takes every new connection.
        for paused in workers:
            os.kill(paused, signal.SIGSTOP)
            try:
                await _live(base, limit=20)
            finally:
                os.kill(paused, signal.SIGCONT)

        # A worker that dies is replaced; the port keeps answering.
        os.kill(workers[0], signal.SIGKILL)
        dead = workers[0]
        await _eventually(lambda: dead not in (now := children_of(process.pid)) and len(now) == 2)
        workers = children_of(process.pid)
        await _live(base)

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await _until_gone(workers)
        assert not list(tmp_path.glob("edge-metrics-*"))  # removed at exit
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_workers_stop_when_the_parent_is_killed(tmp_path):
    process, base = await _edge(tmp_path, workers=2)
    workers: list[int] = []
    try:
        workers = await _workers(process.pid, 2)
        await _live(base)
        process.kill()
        await process.wait()
        await _until_gone(workers)  # the kernel's SIGTERM (PR_SET_PDEATHSIG) and the parent-pid watch
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if process.returncode is None:
            process.kill()
            await process.wait()
