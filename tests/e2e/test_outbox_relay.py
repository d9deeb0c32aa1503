"""A committed change's event reaches the real event store, also when the service is killed (kill -9) after the commit.

Identity signs with the test issuer's key (``VOCELIO_JWT_SIGNING_KEY_FILE``), so the tokens the tests
mint and the service tokens identity issues verify alike. In one process first (identity, agents and
events on ephemeral ports, each backend); then as real processes: agents creates an agent while events
is not running (the relay cannot send), is killed with SIGKILL right after the reply, and after events
and agents start again the ``agent.created`` event is in the store exactly once, with the outbox row's id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import signal
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from mesh.config import Settings
from mesh.registry import default_registry
from tests.support.grpc_helpers import SERVING, wait_for_status
from tests.support.mesh import running_services
from tests.support.processes import PYTHON, REPO, environment, free_port_offset
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc
from vocelio.events.v1 import events_service_pb2, events_service_pb2_grpc

ISSUER = TestIssuer()
REGISTRY = default_registry()
SECRET = "Zq3J9vQx2LmP7wZr4TtY8uB1nC6dF0gHs5aE-iOjKqX"


def _admin() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ISSUER.mint(subject='users/alice', org='org_a', role='ADMIN')}"),)


def _key_file(directory: pathlib.Path) -> pathlib.Path:
    """The test issuer's private key as identity's signing key file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "signing-key.pem"
    path.write_bytes(
        ISSUER.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


async def _create_agent(agents_address: str) -> agent_pb2.Agent:
    async with grpc.aio.insecure_channel(agents_address) as channel:
        reply = await agents_service_pb2_grpc.AgentsServiceStub(channel).CreateAgent(
            agents_service_pb2.CreateAgentRequest(
                parent="organizations/org_a", agent=agent_pb2.Agent(display_name="Front desk")
            ),
            metadata=_admin(),
            timeout=20,
        )
    agent: agent_pb2.Agent = reply.agent
    return agent


async def _stream_events(events_address: str, agent: agent_pb2.Agent, *, limit: float = 30.0) -> list[Any]:
    """The agent's stream in the store, once it holds an event (fails after ``limit`` seconds)."""
    stream = f"organizations/org_a/event_streams/agents-org_a-{agent.name.rsplit('/', 1)[1]}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    async with grpc.aio.insecure_channel(events_address) as channel:
        stub = events_service_pb2_grpc.EventsServiceStub(channel)
        while True:
            try:
                reply = await stub.ReadStream(
                    events_service_pb2.ReadStreamRequest(stream=stream), metadata=_admin(), timeout=10
                )
                if reply.events:
                    await asyncio.sleep(0.5)  # a duplicate would come now, if at all: read again
                    again = await stub.ReadStream(
                        events_service_pb2.ReadStreamRequest(stream=stream), metadata=_admin(), timeout=10
                    )
                    return list(again.events)
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise
            assert loop.time() < deadline, f"no event on {stream} within {limit} s"
            await asyncio.sleep(0.1)


# --- in one process ------------------------------------------------------------------------------------------------


@pytest.fixture
async def mesh(settings: Settings, tmp_path: pathlib.Path) -> AsyncIterator[Any]:
    signed = dataclasses.replace(settings, jwt_signing_key_file=_key_file(tmp_path / "keys"), outbox_poll_interval=30)
    async with running_services(signed, ["identity", "agents", "events"], issuer=ISSUER) as running:
        yield running


async def test_a_created_agent_is_in_the_event_store_once_with_its_outbox_id(mesh: Any) -> None:
    agent = await _create_agent(f"127.0.0.1:{mesh.ports['agents']}")
    # the poll is 30 s away: only the commit's wake-up can bring it this soon
    events = await _stream_events(f"127.0.0.1:{mesh.ports['events']}", agent, limit=10)
    assert [(event.type, event.stream_version) for event in events] == [("agent.created", 0)]
    event = events[0]
    assert event.data["agent"]["name"] == agent.name
    assert event.data_schema == "vocelio.agents.v1.AgentCreatedEvent"
    assert event.organization_id == "org_a"
    assert event.metadata.actor == "users/alice"
    assert event.metadata.source_service == "agents"
    agents_host = next(host for host in mesh.hosts if host.spec.name == "agents")
    async with agents_host.database.sessions() as session:
        from sqlalchemy import select

        from mesh.kit.tables import OutboxRow

        (row,) = (await session.execute(select(OutboxRow))).scalars()
    assert event.event_id == row.event_id
    assert row.relayed_at is not None


# --- kill -9 between the commit and the relay -------------------------------------------------------------------------


async def _start(names: list[str], env: dict[str, str], log: pathlib.Path) -> asyncio.subprocess.Process:
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            PYTHON, "-m", "runtime", "serve", *names, cwd=REPO, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT
        )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


def _outbox(settings: Settings, var_dir: pathlib.Path) -> list[tuple[str, str, object]]:
    """agents' outbox rows (event id, type, relayed_at), read straight from its database."""
    query = "SELECT event_id, event_type, relayed_at FROM outbox"
    if settings.database_url is None:
        with sqlite3.connect(var_dir / "agents.sqlite3") as connection:
            return connection.execute(query).fetchall()
    dsn = settings.database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection:
        connection.execute(f'SET search_path TO "{settings.schema_prefix}agents"')
        return [tuple(row) for row in connection.execute(query).fetchall()]


def _environment(settings: Settings, tmp_path: pathlib.Path, offset: int, **extra: str) -> dict[str, str]:
    """The processes' environment: the test's database, ports at ``offset``, the test issuer's key, a quick relay."""
    database: dict[str, str] = {}
    if settings.database_url is not None:
        database = {
            "VOCELIO_DATABASE_URL": settings.database_url.render_as_string(hide_password=False),
            "VOCELIO_DATABASE_SCHEMA_PREFIX": settings.schema_prefix,
        }
    return environment(
        **database,
        VOCELIO_PORT_OFFSET=str(offset),
        VOCELIO_VAR_DIR=str(tmp_path / "var"),
        VOCELIO_SERVICE_SECRET=SECRET,
        VOCELIO_JWT_SIGNING_KEY_FILE=str(_key_file(tmp_path / "keys")),
        VOCELIO_SHUTDOWN_DRAIN="0",
        VOCELIO_SHUTDOWN_GRACE="1",
        VOCELIO_LOG_LEVEL="WARNING",
        VOCELIO_OUTBOX_POLL_INTERVAL="0.5",
        VOCELIO_OUTBOX_RETRY_MAX_BACKOFF="1",
        **extra,
    )


def _address(offset: int, name: str) -> str:
    """Where service ``name`` listens in processes started with that port offset."""
    return f"127.0.0.1:{Settings(port_offset=offset).port_for(REGISTRY.service(name).contract_port)}"


async def test_an_event_committed_just_before_a_kill_9_reaches_the_store_after_the_restart(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    offset = free_port_offset()
    var_dir = tmp_path / "var"
    log = tmp_path / "services.log"
    env = _environment(settings, tmp_path, offset)

    def address(name: str) -> str:
        return _address(offset, name)

    processes: list[asyncio.subprocess.Process] = []
    try:
        processes.append(await _start(["identity"], env, log))
        await wait_for_status(address("identity"), SERVING, limit=60)
        agents = await _start(["agents"], env, log)
        processes.append(agents)
        await wait_for_status(address("agents"), SERVING, limit=60)

        agent = await _create_agent(address("agents"))  # committed; events is not running, so not relayed
        agents.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(agents.wait(), 10) == -signal.SIGKILL
        ((event_id, event_type, relayed_at),) = _outbox(settings, var_dir)
        assert (event_type, relayed_at) == ("agent.created", None)

        processes.append(await _start(["events"], env, log))
        await wait_for_status(address("events"), SERVING, limit=60)
        processes.append(await _start(["agents"], env, log))
        await wait_for_status(address("agents"), SERVING, limit=60)

        events = await _stream_events(address("events"), agent, limit=60)
        assert [(event.event_id, event.type) for event in events] == [(event_id, "agent.created")]
        assert events[0].data["agent"]["name"] == agent.name
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while _outbox(settings, var_dir)[0][2] is None:  # the relay marks the row once the store has it
            assert loop.time() < deadline, "the outbox row was never marked relayed"
            await asyncio.sleep(0.1)
    except BaseException:
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        for process in reversed(processes):
            await _stop(process)
