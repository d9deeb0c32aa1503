"""Wires the events service into a service host.

One :class:`~services.events.appender.Appender` per process writes every append (group
commit); one :class:`~services.events.notifier.LogNotifier` wakes subscribers after its
commits; one :class:`~services.events.store.WriteGate` orders SQLite writers. At shutdown
the host awaits the hook registered here: the appender refuses new appends and drains its
queue (bounded), the notifier closes (every subscription ends with UNAVAILABLE at once, so
none holds the drain) and the retention task stops.
"""

from __future__ import annotations

import asyncio

import grpc

from runtime.handlers import ServiceContext
from services.events.appender import Appender
from services.events.batch_writers import writer_for
from services.events.notifier import LogNotifier
from services.events.retention import Retention
from services.events.servicer import EventsServicer
from services.events.store import WriteGate
from vocelio.events.v1 import events_service_pb2_grpc


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the events servicer to ``server`` and start its retention task."""
    notifier = LogNotifier()
    gate = WriteGate(context.database.kind)
    appender = Appender(writer_for(context.database, gate), notifier, context.clock)
    servicer = EventsServicer(
        context.sessions,
        context.page_tokens,
        gate=gate,
        notifier=notifier,
        appender=appender,
        clock=context.clock,
        poll_interval=context.settings.events_poll_interval,
    )
    events_service_pb2_grpc.add_EventsServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    retention = Retention(
        context.sessions,
        gate,
        context.clock,
        retention_days=context.settings.events_retention_days,
        interval=context.settings.events_retention_interval,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        retention.start()

    async def stop() -> None:
        await appender.close()
        notifier.close()
        await retention.stop()

    context.on_shutdown(stop)
