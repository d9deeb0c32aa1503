"""The transactional outbox: typed domain events written in the change's own transaction.

A service records a change and the event describing it in one transaction; the relay
forwards the row to the events service. Payloads are the typed messages the contracts
declare (``AgentCreatedEvent``); :func:`mesh.event_types.encode` gives the event type, the
``data_schema`` (the message's full name) and the proto3 JSON object stored as ``data``.

What the relay needs later is captured at append time, inside the call that made the
change: the metadata gains the call's ``requestId`` and W3C ``traceParent`` (unless the
service set them), and ``seq`` records the order of appends. ``seq`` is a hybrid clock of
the process (nanoseconds since the epoch, and at least one more than the last value), so
appends of one process are strictly ordered and a restarted process continues above the
values of the one before it; the relay orders by ``(occurred_at, seq)``.

Wake-up: an :class:`Outbox` built with a :class:`CommitSignal` fires it once the
transaction that appended commits (SQLAlchemy's ``after_commit`` on the session), so the
relay sends the event right away instead of at its next poll; a rolled-back transaction
sends nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from google.protobuf import message
from opentelemetry import trace
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import event_types, request_id
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.tables import OutboxRow

# session.info key: this transaction already fires the commit signal once it commits
_SIGNAL_PENDING = "vocelio_outbox_signal_pending"
_SIGNAL_HOOKED = "vocelio_outbox_signal_hooked"


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class _AppendOrder:
    """The process's hybrid clock of appends: ``max(now in ns, last + 1)``."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(time.time_ns(), self._last + 1)
        return self._last


_ORDER = _AppendOrder()


def call_metadata() -> dict[str, str]:
    """The running call's request id and W3C trace parent, for an event's metadata (empty outside a call)."""
    found: dict[str, str] = {}
    if current_request := request_id.current():
        found["requestId"] = current_request
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        found["traceParent"] = (
            f"00-{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}"
            f"-{int(context.trace_flags):02x}"
        )
    return found


class CommitSignal:
    """A wake-up the relay waits on, fired after a commit that wrote outbox rows.

    Fired from SQLAlchemy's ``after_commit`` hook, which runs on the event loop's thread;
    waiting and firing are cheap (an :class:`asyncio.Event`).
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        """Wake the waiter (a no-op when it is already awake)."""
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a firing; ``True`` when one came. Clears the signal."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True

    def watch(self, session: AsyncSession) -> None:
        """Fire once the session's running transaction commits.

        One ``after_commit`` hook per session, firing only after a transaction that
        appended; a rolled-back transaction leaves the mark behind, so at worst a later
        commit of the same session wakes the relay for nothing.
        """
        sync = session.sync_session
        sync.info[_SIGNAL_PENDING] = True
        if not sync.info.get(_SIGNAL_HOOKED):
            sync.info[_SIGNAL_HOOKED] = True
            event.listen(sync, "after_commit", self._committed)

    def _committed(self, session: Any) -> None:
        if session.info.pop(_SIGNAL_PENDING, False):
            self.fire()


def event_row(
    payload: message.Message, *, stream: str, occurred_at: datetime.datetime, metadata: Mapping[str, str]
) -> OutboxRow:
    """The outbox row of a typed event (not yet added to a session).

    Raises:
        UnknownEventType: the message is not a declared event payload.

    """
    encoded = event_types.encode(payload)
    return OutboxRow(
        event_id=str(uuid.uuid4()),
        stream=stream,
        event_type=encoded.type,
        data_schema=encoded.data_schema,
        data=_json(encoded.data),
        metadata_=_json(dict(metadata)),
        occurred_at=occurred_at,
        relayed_at=None,
        attempts=0,
        seq=_ORDER.next(),
        failed_at=None,
        last_error="",
    )


async def append(
    session: AsyncSession,
    payload: message.Message,
    *,
    stream: str,
    occurred_at: datetime.datetime,
    metadata: Mapping[str, str] | None = None,
) -> OutboxRow:
    """Add a typed event to the outbox, in the caller's transaction.

    Args:
        session: the transaction of the change the event describes.
        payload: the typed event message.
        stream: the resource's event stream (``agents-{organization}-{id}``).
        occurred_at: when the change happened.
        metadata: who did it, in which organisation (never secrets); the running call's
            ``requestId`` and ``traceParent`` are added unless given.

    Raises:
        UnknownEventType: the message is not a declared event payload.

    """
    row = event_row(payload, stream=stream, occurred_at=occurred_at, metadata={**call_metadata(), **(metadata or {})})
    session.add(row)
    await session.flush()
    return row


def decode(row: OutboxRow) -> message.Message:
    """The typed payload of an outbox row (the inverse of :func:`append`).

    Raises:
        InvalidArgument: the row's type is unknown or its data does not fit the message.

    """
    return event_types.decode(row.event_type, row.data_schema, row.data)


class Outbox:
    """The outbox of one service, stamping events with its clock and waking its relay after the commit."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, signal: CommitSignal | None = None) -> None:
        self._clock = clock
        self.signal = signal

    async def append(
        self,
        session: AsyncSession,
        payload: message.Message,
        *,
        stream: str,
        metadata: Mapping[str, str] | None = None,
    ) -> OutboxRow:
        """:func:`append` with ``occurred_at`` from the service's clock; the relay wakes after the commit."""
        row = await append(session, payload, stream=stream, occurred_at=self._clock.now(), metadata=metadata)
        if self.signal is not None:
            self.signal.watch(session)
        return row
