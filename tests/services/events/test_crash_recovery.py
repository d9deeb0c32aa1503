"""Kill -9 the events service and a subscriber mid-stream: after restart nothing is lost or doubled.

Real processes (``tests/services/events/processes.py``): the events service, a consumer that
checkpoints every few events, and this test as the producer, appending batches with fixed
event ids and retrying each until it is stored (appends are idempotent by event id). Both
processes are killed with SIGKILL while events are flowing, then started again on the same
database. The consumer resumes from its saved checkpoint (not from the start), and after
de-duplicating by event id it has handled every stored event exactly once, in global order.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
from collections.abc import Callable

import grpc
import pytest

from mesh.config import Settings
from tests.services.events.support import pb, proposed_event, service_metadata
from tests.support.grpc_helpers import SERVING, wait_for_status
from tests.support.kit import ISSUER
from tests.support.processes import PYTHON, REPO, environment, free_port_offset
from vocelio.events.v1 import events_service_pb2_grpc

BATCHES = 30
PER_BATCH = 3
CHECKPOINT = "consumer_checkpoints/crash.consumer"
CONSUMER_SCOPE = "consumer_checkpoints.get consumer_checkpoints.save events.subscribe"


def _database_environment(settings: Settings) -> dict[str, str]:
    env = {"VOCELIO_VAR_DIR": str(settings.var_dir)}
    if settings.database_url is not None:
        env["VOCELIO_DATABASE_URL"] = settings.database_url.render_as_string(hide_password=False)
        env["VOCELIO_DATABASE_SCHEMA_PREFIX"] = settings.schema_prefix
    return env


async def _start(role: str, log: pathlib.Path, **env: str) -> asyncio.subprocess.Process:
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "tests.services.events.processes",
            role,
            cwd=REPO,
            env=environment(VOCELIO_SHUTDOWN_DRAIN="0", VOCELIO_SHUTDOWN_GRACE="1", VOCELIO_LOG_LEVEL="WARNING", **env),
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
        await process.wait()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            await _kill(process)


def _lines(path: pathlib.Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    return [(int(p), i) for p, i in (line.split() for line in path.read_text().splitlines() if line.strip())]


async def _until(condition: Callable[[], bool], limit: float, output: pathlib.Path) -> None:
    """Poll ``condition`` (a file another process writes) until it holds; fail after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the condition is a file another process writes
            await asyncio.sleep(0.05)


# Four Python process starts (two of the service, two of the consumer) under a loaded machine.
@pytest.mark.timeout(150)
async def test_kill_9_of_the_service_and_a_subscriber_loses_and_doubles_nothing(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    port = 8023 + free_port_offset()
    address = f"127.0.0.1:{port}"
    output = tmp_path / "consumer.txt"
    service_env = {
        **_database_environment(settings),
        "EVENTS_TEST_PORT": str(port),
        "EVENTS_TEST_JWKS": json.dumps(ISSUER.jwks),
        "VOCELIO_SERVICE_SECRET": "events-crash-test-secret-0123456789abcdef",
        "VOCELIO_HEALTH_PROBE_INTERVAL": "0.2",
    }
    consumer_env = {
        "EVENTS_TEST_PORT": str(port),
        "EVENTS_TEST_OUTPUT": str(output),
        "EVENTS_TEST_CHECKPOINT": CHECKPOINT,
        "EVENTS_TEST_EVERY": "4",
        "EVENTS_TEST_TOKEN": ISSUER.mint_service("crash", scope=CONSUMER_SCOPE),
    }
    batches = [[proposed_event() for _ in range(PER_BATCH)] for _ in range(BATCHES)]
    streams = [f"event_streams/order-{i % 5}" for i in range(BATCHES)]
    service = await _start("events", tmp_path / "events.log", **service_env)
    consumer: asyncio.subprocess.Process | None = None
    try:
        await wait_for_status(address, SERVING, limit=60)
        consumer = await _start("subscriber", tmp_path / "consumer.log", **consumer_env)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = events_service_pb2_grpc.EventsServiceStub(channel)

            async def produce(first: int, last: int) -> None:
                for stream, batch in zip(streams[first:last], batches[first:last], strict=True):
                    request = pb.AppendToStreamRequest(stream=stream, events=batch)
                    while True:  # the relay's retry: the same event ids until stored
                        try:
                            await stub.AppendToStream(request, metadata=service_metadata(), timeout=5)
                            break
                        except grpc.aio.AioRpcError as error:
                            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                                raise
                            await asyncio.sleep(0.2)
                    await asyncio.sleep(0.02)

            third = BATCHES // 3
            await produce(0, third)
            await _until(lambda: len(_lines(output)) >= 2 * PER_BATCH * third // 3, 40, output)
            # Mid-stream: appends are still arriving (and the last third comes after the restart).
            producer = asyncio.create_task(produce(third, 2 * third))
            await asyncio.sleep(0.2)
            await _kill(consumer)
            await _kill(service)
            handled_before = len(_lines(output))
            # Both come back at once; the consumer waits for the service (wait_for_ready).
            service = await _start("events", tmp_path / "events.log", **service_env)
            consumer = await _start("subscriber", tmp_path / "consumer.log", **consumer_env)
            await wait_for_status(address, SERVING, limit=60)
            await asyncio.wait_for(producer, 60)
            await produce(2 * third, BATCHES)
            total = BATCHES * PER_BATCH
            await _until(lambda: len(_lines(output)) >= total, 40, output)
            stored = await stub.ReadAll(
                pb.ReadAllRequest(parent="organizations/-", max_count=1000), metadata=service_metadata()
            )
        handled = _lines(output)
        expected = [(e.global_position, e.event_id) for e in stored.events]
        assert len(expected) == total  # no append was stored twice, none lost
        assert {e.event_id for e in stored.events} == {e.event_id for batch in batches for e in batch}
        assert handled == expected  # every event handled once, in global order
        resumed = [int(line.split()[1]) for line in output.with_suffix(".log").read_text().splitlines()]
        assert resumed[0] == 0 and 0 < resumed[1] <= handled[handled_before - 1][0]
        assert handled_before - [p for p, _ in handled].index(resumed[1]) - 1 <= 4  # redelivered at most one interval
    finally:
        if consumer is not None:
            await _stop(consumer)
        await _stop(service)
