"""`python -m runtime run` (what `make run` starts), as a real process tree.

The mesh comes up with every service SERVING and listed by reflection on its port, the
edge aggregates their health, a crashed service is restarted and the supervisor says so,
and Ctrl-C stops every process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal

import httpx
import pytest

from mesh.registry import default_registry
from tests.support.grpc_helpers import SERVING, health_status, reflection_services, wait_for_status
from tests.support.processes import PYTHON, REPO, environment, free_port_offset

C_CORE_LINE = re.compile(r"^[IWEF]\d{4} ")
READY = re.compile(
    r"mesh (ready|NOT ready): (\d+)/(\d+) services SERVING after ([\d.]+)s; "
    r"resident memory (\d+) MiB \(proportional (\d+) MiB\)"
)


async def _read_until(stream: asyncio.StreamReader, pattern: str | re.Pattern[str], limit: float, seen: list[str]):
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    async with asyncio.timeout(limit):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError("supervisor output ended:\n" + "".join(seen))
            seen.append(line)
            match = regex.search(line)
            if match:
                return match


@pytest.mark.parametrize("mode", ["processes", "all-in-one"])
async def test_run_starts_reports_restarts_and_stops_the_mesh(mode, tmp_path):
    offset = free_port_offset()
    supervisor = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "runtime",
        "run",
        cwd=REPO,
        env=environment(
            VOCELIO_PORT_OFFSET=str(offset),
            VOCELIO_VAR_DIR=str(tmp_path),
            VOCELIO_MESH_MODE=mode,
            VOCELIO_SHUTDOWN_DRAIN="0.1",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert supervisor.stdout is not None
    seen: list[str] = []
    registry = default_registry()
    try:
        # past the supervisor's own ready_timeout (120 s), so its verdict is what we read
        ready = await _read_until(supervisor.stdout, READY, 150, seen)
        assert ready.group(1) == "ready", "".join(seen)
        assert int(ready.group(2)) == int(ready.group(3)) == len(registry) == 23

        table = {line.split()[0]: line.split() for line in seen if re.match(r"^[a-z_]+\s+127\.0\.0\.1:\d+", line)}
        for spec in registry:
            address = f"127.0.0.1:{spec.contract_port + offset}"
            assert table[spec.name][1] == address
            assert table[spec.name][3] == "SERVING"
            assert await health_status(address) == SERVING
            assert spec.full_name in await reflection_services(address)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{8000 + offset}") as client:
            response = await client.get("/health")
            assert response.status_code == 200
            assert len(response.json()["services"]) == 23

        # A crash: the supervisor notices, says so, and brings the service back.
        victim = "agents" if mode == "processes" else "mesh"
        pid = int(table["agents"][2])
        os.kill(pid, signal.SIGKILL)
        await _read_until(supervisor.stdout, rf"{victim} exited with code -9 .*restarting in 1s", 30, seen)
        await _read_until(supervisor.stdout, rf"{victim} restarted \(restart #1\)", 30, seen)
        await wait_for_status(f"127.0.0.1:{8002 + offset}", SERVING, limit=60)

        # Ctrl-C stops everything.
        pids = [int(row[2]) for row in table.values()]
        supervisor.send_signal(signal.SIGINT)
        await _read_until(supervisor.stdout, "mesh stopped", 60, seen)
        assert await asyncio.wait_for(supervisor.wait(), 30) == 0
        for child in pids:
            if child != pid:
                with pytest.raises(ProcessLookupError):
                    os.kill(child, 0)
        assert await health_status(f"127.0.0.1:{8002 + offset}", timeout=0.5) is None

        # The children's files hold JSON lines (gRPC's C core writes its own few lines itself).
        for name, process in (
            ((victim, victim), ("edge", "gateway_rest")) if mode == "processes" else (("mesh", "mesh"),)
        ):
            lines = (tmp_path / "log" / f"{name}.log").read_text().splitlines()
            records = [json.loads(line) for line in lines if not C_CORE_LINE.match(line)]
            assert records and {record["process"] for record in records} == {process}, lines[:5]
        assert not [line for line in seen if line.startswith("{")], "the supervisor's console is not for JSON"
    finally:
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                children.append(int(entry))
    return children


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


async def test_killing_the_supervisor_stops_every_child(tmp_path):
    """A supervisor killed with SIGKILL cannot stop its children; the kernel tells them to stop."""
    offset = free_port_offset()
    supervisor = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "runtime",
        "run",
        cwd=REPO,
        env=environment(VOCELIO_PORT_OFFSET=str(offset), VOCELIO_VAR_DIR=str(tmp_path), VOCELIO_SHUTDOWN_DRAIN="0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert supervisor.stdout is not None
    seen: list[str] = []
    children: list[int] = []
    try:
        await _read_until(supervisor.stdout, READY, 50, seen)
        children = _children_of(supervisor.pid)
        assert len(children) == len(default_registry()) + 1  # every service and the edge
        supervisor.kill()
        await supervisor.wait()
        async with asyncio.timeout(40):  # a condition with a generous ceiling, not a timing claim
            while True:
                if not any(_alive(pid) for pid in children):
                    break
                await asyncio.sleep(0.1)
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
