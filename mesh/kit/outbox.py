"""The transactional outbox: typed domain events written in the change's own transaction.

A service records a change and the event describing it in one transaction; the relay
forwards the row to the events service. Payloads are the typed messages the contracts
declare (``AgentCreatedEvent``); :func:`mesh.event_types.encode` gives the event type, the
``data_schema`` (the message's full name) and the proto3 JSON object stored as ``data``.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Mapping

from google.protobuf import message
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import event_types
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.tables import OutboxRow


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


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
        metadata: who did it, in which organisation (never secrets).

    Raises:
        UnknownEventType: the message is not a declared event payload.

    """
    row = event_row(payload, stream=stream, occurred_at=occurred_at, metadata=metadata or {})
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
    """The outbox of one service, stamping events with its clock."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock

    async def append(
        self,
        session: AsyncSession,
        payload: message.Message,
        *,
        stream: str,
        metadata: Mapping[str, str] | None = None,
    ) -> OutboxRow:
        """:func:`append` with ``occurred_at`` from the service's clock."""
        return await append(session, payload, stream=stream, occurred_at=self._clock.now(), metadata=metadata)
