"""Real processes for the crash tests: the events service, and a checkpointing subscriber.

``python -m tests.services.events.processes events`` serves the events service on
``EVENTS_TEST_PORT`` with the settings of the environment, trusting the JWKS in
``EVENTS_TEST_JWKS`` (a test issuer's), until SIGTERM.

``python -m tests.services.events.processes subscriber`` is a consumer group member: it
subscribes to the global log from its checkpoint (``EVENTS_TEST_CHECKPOINT``), appends
every new event as ``position event_id`` to ``EVENTS_TEST_OUTPUT`` (fsynced), skips events
already in that file (delivery is at-least-once; consumers de-duplicate by event id), and
saves its checkpoint after every ``EVENTS_TEST_EVERY`` events. It writes ``resumed N`` to
``EVENTS_TEST_OUTPUT.log`` with the position it started after.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import sys

import grpc

from mesh.config import Settings
from mesh.jwks import StaticKeys
from mesh.registry import default_registry
from runtime.security import SecurityOptions
from runtime.server import ServiceHost
from vocelio.events.v1 import events_service_pb2, events_service_pb2_grpc

pb = events_service_pb2


async def serve_events() -> None:
    """Serve the events service until SIGTERM."""
    settings = Settings.from_environ(os.environ)
    registry = default_registry()
    jwks = json.loads(os.environ["EVENTS_TEST_JWKS"])
    host = ServiceHost(
        registry.service("events"),
        settings,
        registry,
        port=int(os.environ["EVENTS_TEST_PORT"]),
        security=SecurityOptions(keys=StaticKeys(jwks), watch_revocations=False, api_keys=False),
        serve_metrics=False,
    )
    await host.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await host.shutdown()


async def subscribe() -> None:
    """Consume the global log from the checkpoint, de-duplicating by event id, checkpointing as it goes."""
    output = pathlib.Path(os.environ["EVENTS_TEST_OUTPUT"])
    checkpoint = os.environ["EVENTS_TEST_CHECKPOINT"]
    every = int(os.environ.get("EVENTS_TEST_EVERY", "5"))
    metadata = (("authorization", f"Bearer {os.environ['EVENTS_TEST_TOKEN']}"),)
    seen = {line.split()[1] for line in output.read_text().splitlines()} if output.exists() else set()  # noqa: ASYNC240 - a small local file, read once at start
    async with grpc.aio.insecure_channel(f"127.0.0.1:{os.environ['EVENTS_TEST_PORT']}") as channel:
        stub = events_service_pb2_grpc.EventsServiceStub(channel)
        try:
            saved = await stub.GetConsumerCheckpoint(
                pb.GetConsumerCheckpointRequest(name=checkpoint), metadata=metadata, timeout=30, wait_for_ready=True
            )
            after = saved.consumer_checkpoint.global_position
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            after = 0
        with output.with_suffix(".log").open("a") as log:
            log.write(f"resumed {after}\n")
        call = stub.SubscribeToAll(
            pb.SubscribeToAllRequest(parent="organizations/-", consumer_checkpoint=checkpoint),
            metadata=metadata,
            wait_for_ready=True,
        )
        handled = 0
        with output.open("a") as sink:  # noqa: ASYNC230 - the consumer's own output, fsynced per event on purpose
            async for message in call:
                if not message.HasField("event"):
                    continue
                event = message.event
                if event.event_id not in seen:
                    sink.write(f"{event.global_position} {event.event_id}\n")
                    sink.flush()
                    os.fsync(sink.fileno())
                    seen.add(event.event_id)
                handled += 1
                if handled % every == 0:
                    await stub.SaveConsumerCheckpoint(
                        pb.SaveConsumerCheckpointRequest(name=checkpoint, global_position=event.global_position),
                        metadata=metadata,
                        timeout=10,
                    )


if __name__ == "__main__":
    asyncio.run(serve_events() if sys.argv[1] == "events" else subscribe())
