"""The events service side of ``make bench-events``: real processes on PostgreSQL, driven over gRPC.

Three processes, started the way the supervisor starts them (``python -m runtime serve <name>``, each with
only its own service credential, identity with the master secret): identity, which issues the tokens,
team_hub, which provisions the bench's organisation at sign-up, and events, the service under test, all on
the bench's fresh schema prefix of the PostgreSQL database. The bench then acts as the mesh does:

* it appends with the token of a service allowed ``AppendToStream`` (the outbox relay's principal: every
  service host's; found in the contracts, ``Registry.service_permissions``), ``expected_revision`` set as a
  producer with an aggregate would;
* it subscribes as the admin of a freshly signed-up organisation (password grant), live only — the
  customer's view of the log, which is what the issue's lag is about, and a path that needs no service to
  declare subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from bench.events_load import Appender, LagResult, Payload, RateResult, paced, run_writers, until
from bench.processes import BenchError, Child
from mesh import service_credentials
from mesh.channels import CHANNEL_OPTIONS
from mesh.registry import Registry
from runtime.probe import grpc_health
from vocelio.events.v1 import events_service_pb2 as events_pb2
from vocelio.events.v1 import events_service_pb2_grpc as events_grpc
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

APPEND = "/vocelio.events.v1.EventsService/AppendToStream"


def caller_of(registry: Registry, method: str) -> str:
    """A service whose own token carries ``method``'s permission (its contract's calls or the runtime's).

    The outbox relay's principal for appends (every service host's, ``agents`` preferred: the producer the
    issue's acceptance follows), a projection's for subscriptions; the first by name otherwise.
    """
    spec = registry.method(method)
    permission = spec.policy.permission if spec is not None and spec.policy is not None else ""
    callers = sorted(s.name for s in registry if permission and permission in registry.service_permissions(s.name))
    if not callers:
        raise BenchError(
            f"no service's token may call {method} (no contract declares it among its calls), "
            "and the bench acts as such a service"
        )
    return "agents" if "agents" in callers else callers[0]


class EventsMesh:
    """identity and events as two ``python -m runtime serve`` processes on PostgreSQL (a context manager)."""

    def __init__(
        self, registry: Registry, work: pathlib.Path, *, database_url: str, schema_prefix: str, port_offset: int
    ) -> None:
        self.registry = registry
        self.master = secrets.token_urlsafe(32)
        self.offset = port_offset
        self._env = {
            "VOCELIO_DATABASE_URL": database_url,
            "VOCELIO_DATABASE_SCHEMA_PREFIX": schema_prefix,
            "VOCELIO_VAR_DIR": str(work / "var"),
            "VOCELIO_PORT_OFFSET": str(port_offset),
            "VOCELIO_METRICS_PORT_OFFSET": "1000",
            "VOCELIO_LOG_LEVEL": "WARNING",
            "VOCELIO_SHUTDOWN_DRAIN": "0",
        }
        self.work = work
        self._children: list[Child] = []
        self.events: Child | None = None

    def address(self, service: str) -> str:
        """``127.0.0.1:port`` of a service at the bench's port offset."""
        return f"127.0.0.1:{self.registry.service(service).contract_port + self.offset}"

    def credential(self, service: str) -> str:
        """Service ``service``'s own credential (derived from the master secret, as the supervisor does)."""
        return service_credentials.derive(self.master, service)

    def _start(self, service: str) -> Child:
        env = {**self._env, "VOCELIO_SERVICE_CREDENTIAL": self.credential(service)}
        if service == "identity":
            env["VOCELIO_SERVICE_SECRET"] = self.master
        argv = [sys.executable, "-m", "runtime", "serve", service]
        child = Child(f"{service} service", argv, self.work / f"{service}.log", env=env)
        self._children.append(child)
        return child

    async def start(self, timeout: float = 90) -> None:
        """Start identity, team_hub and events, each once the one before answers its health check SERVING."""
        for service in ("identity", "team_hub", "events"):
            child = self._start(service)
            if service == "events":
                self.events = child
            deadline = time.monotonic() + timeout
            while await grpc_health(self.address(service)) != "SERVING":
                child.check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(f"{service} was not SERVING within {timeout:.0f}s (see {child.log})")
                await asyncio.sleep(0.2)

    @property
    def events_pid(self) -> int:
        """The events process's id."""
        if self.events is None:
            raise BenchError("the events service is not running")
        return self.events.pid

    def events_cpu(self) -> float:
        """CPU seconds the events process has used so far."""
        if self.events is None:
            raise BenchError("the events service is not running")
        return self.events.cpu_seconds()

    def close(self) -> None:
        """Stop every process started (events first)."""
        while self._children:
            self._children.pop().close()

    async def token(self, service: str) -> str:
        """An access token for ``services/<service>`` from identity (client_credentials grant)."""
        async with grpc.aio.insecure_channel(self.address("identity"), options=CHANNEL_OPTIONS) as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)  # type: ignore[no-untyped-call]
            request = identity_service_pb2.IssueTokenRequest(
                grant_type="client_credentials", client_id=f"services/{service}", client_secret=self.credential(service)
            )
            try:
                reply = await stub.IssueToken(request, timeout=10)
            except grpc.aio.AioRpcError as error:
                raise BenchError(f"identity refused a token for services/{service}: {error.code().name}") from error
            return str(reply.access_token)

    async def admin(self, email: str, password: str) -> tuple[str, str]:
        """Sign up a new organisation through identity and log its admin in: (organisation id, access token)."""
        async with grpc.aio.insecure_channel(self.address("identity"), options=CHANNEL_OPTIONS) as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                await stub.SignUp(
                    identity_service_pb2.SignUpRequest(
                        email=email,
                        password=password,
                        display_name="Bench",
                        organization_display_name="Bench",
                        terms_accepted=True,
                    ),
                    timeout=30,
                )
                reply = await stub.IssueToken(
                    identity_service_pb2.IssueTokenRequest(grant_type="password", username=email, password=password),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                raise BenchError(f"signing up the bench's organisation failed: {error.code().name}") from error
            return str(reply.organization_id), str(reply.access_token)


@contextlib.contextmanager
def closing(mesh: EventsMesh) -> Iterator[EventsMesh]:
    """``mesh``, always closed afterwards."""
    try:
        yield mesh
    finally:
        mesh.close()


class EventsClient:
    """The bench as the events service's client: one channel, a service token per role."""

    def __init__(self, address: str, payload: Payload, *, append_token: str, subscribe_token: str) -> None:
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = events_grpc.EventsServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.payload = payload
        self.organization = payload.organization_id
        self._append_metadata = (("authorization", f"Bearer {append_token}"),)
        self._subscribe_metadata = (("authorization", f"Bearer {subscribe_token}"),)
        self._data = struct_pb2.Struct()
        json_format.ParseDict(payload.data, self._data)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close(grace=None)

    def _stream(self, label: str) -> str:
        return f"organizations/{self.organization}/event_streams/bench{label}-{uuid.uuid4().hex[:12]}"

    def _request(self, stream: str, version: int, event_ids: list[str]) -> events_pb2.AppendToStreamRequest:
        events = [
            events_pb2.ProposedEvent(
                event_id=event_id, type=self.payload.type, data=self._data, data_schema=self.payload.data_schema
            )
            for event_id in event_ids
        ]
        return events_pb2.AppendToStreamRequest(
            stream=stream, organization_id=self.organization, expected_revision=version, events=events
        )

    async def append(self, stream: str, version: int, event_ids: list[str]) -> int:
        """Append events at ``version`` + 1 …; the stream's new version (checked)."""
        try:
            reply = await self.stub.AppendToStream(
                self._request(stream, version, event_ids), metadata=self._append_metadata, timeout=30
            )
        except grpc.aio.AioRpcError as error:
            raise BenchError(f"AppendToStream failed: {error.code().name}: {error.details()}") from error
        expected = version + len(event_ids)
        if reply.current_version != expected or reply.already_appended:
            raise BenchError(f"AppendToStream answered version {reply.current_version}, expected {expected}")
        return int(reply.current_version)

    def _appender(self, batch: int) -> Appender:
        stream = self._stream(str(batch))
        version = -1

        async def append() -> int:
            nonlocal version
            version = await self.append(stream, version, [str(uuid.uuid4()) for _ in range(batch)])
            return batch

        return append

    async def appends(self, *, writers: int, batch: int, duration: float) -> RateResult:
        """Events per second appended by ``writers`` concurrent callers, ``batch`` per request."""
        return await run_writers([self._appender(batch) for _ in range(writers)], duration)

    @contextlib.asynccontextmanager
    async def subscription(self, received: dict[str, float]) -> AsyncIterator[asyncio.Task[None]]:
        """A live-only SubscribeToAll of the organisation's admin; each event's arrival time lands in ``received``."""
        request = events_pb2.SubscribeToAllRequest(parent=f"organizations/{self.organization}", live_only=True)
        call: Any = self.stub.SubscribeToAll(request, metadata=self._subscribe_metadata)
        caught_up = asyncio.Event()

        async def consume() -> None:
            try:
                async for message in call:
                    kind = message.WhichOneof("message")
                    if kind == "event":
                        received[message.event.event_id] = time.perf_counter()
                    elif kind == "caught_up":
                        caught_up.set()
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    raise BenchError(f"SubscribeToAll failed: {error.code().name}: {error.details()}") from error

        task = asyncio.create_task(consume())
        try:
            # A live-only subscription says it is live with caught_up; the events sent from then on are live.
            await asyncio.wait({task, asyncio.create_task(caught_up.wait())}, timeout=10, return_when="FIRST_COMPLETED")
            if task.done():
                task.result()
                raise BenchError("SubscribeToAll ended before it went live")
            if not caught_up.is_set():
                raise BenchError("SubscribeToAll sent no caught_up within 10 s of subscribing live-only")
            yield task
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def live_lag(self, *, rate: float, duration: float, warmup: float, streams: int = 16) -> LagResult:
        """Append-to-receipt lag of a live SubscribeToAll at a steady ``rate`` of single-event appends.

        The appends go round ``streams`` streams (aggregates), each appended to with its expected version, so
        one stream's appends wait for each other (as one aggregate's do) but the streams' do not. The lag of an
        event runs from the moment its AppendToStream call is made to its arrival at the subscriber.
        """
        received: dict[str, float] = {}
        sent: dict[str, float] = {}
        names = [self._stream(f"live{index}") for index in range(streams)]
        versions = [-1] * streams
        locks = [asyncio.Lock() for _ in range(streams)]

        async def send(sequence: int, record: bool) -> None:
            index = sequence % streams
            event_id = str(uuid.uuid4())
            async with locks[index]:
                if record:
                    sent[event_id] = time.perf_counter()
                versions[index] = await self.append(names[index], versions[index], [event_id])

        async with self.subscription(received) as task:
            if warmup > 0:
                await paced(lambda sequence: send(sequence, False), rate, warmup)
            achieved = await paced(lambda sequence: send(sequence, True), rate, duration)
            await until(lambda: all(event_id in received for event_id in sent) or task.done(), timeout=5)
            if task.done():
                task.result()
        lags = [received[event_id] - start for event_id, start in sent.items() if event_id in received]
        return LagResult.of(lags, expected=len(sent), rate=achieved)
