"""The typed events developer_api records, one stream per key (``developer_api_events.proto``).

Each change is written to the outbox (:mod:`mesh.kit.outbox`) in the transaction that
makes it. ``api_key.expired`` is declared but not recorded: a key expires by the clock,
with no transaction to write the event in (readers see the state EXPIRED at once).

=============== ======================
api_key.created ``ApiKeyCreatedEvent``
api_key.updated ``ApiKeyUpdatedEvent``
api_key.rotated ``ApiKeyRotatedEvent``
api_key.revoked ``ApiKeyRevokedEvent``
=============== ======================
"""

from __future__ import annotations

from google.protobuf import message
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit.outbox import Outbox
from mesh.principal import Principal
from services.developer_api.domain import parse_key_name


def stream_of(key_name: str) -> str:
    """The event stream of one key (``api_keys-{organization}-{api_key}``)."""
    organization_id, key_id = parse_key_name(key_name)
    return f"api_keys-{organization_id}-{key_id}"


async def record(
    outbox: Outbox, session: AsyncSession, key_name: str, payload: message.Message, actor: Principal
) -> None:
    """Write an event about one key to the outbox, in the running transaction."""
    organization_id, _ = parse_key_name(key_name)
    metadata = {"organizationId": organization_id, "actor": actor.subject}
    await outbox.append(session, payload, stream=stream_of(key_name), metadata=metadata)
