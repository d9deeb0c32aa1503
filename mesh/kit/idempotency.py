"""One ``request_id`` store for every non-idempotent mutation (AIP-155).

Scope: (organisation, method, request_id) — two organisations never collide, and the same id
on two methods means two requests. The table ``idempotency_keys`` is created by the shared
``mesh`` migration, so every service's database has it. A key lives 24 hours.

In the transaction of the mutation::

    claim = await store.claim(session, method="CreateAgent", organization_id=org,
                              principal=caller.subject, request=request,
                              response_type=agent_pb2.Agent)
    if claim.replay is not None:
        return claim.replay            # the first response, the effect not repeated
    ... do the work ...
    await claim.complete(session, response)

- Same id, same request (request_id cleared, serialised deterministically): the first
  response.
- Same id, another request: INVALID_ARGUMENT naming ``request_id`` (AIP-155 leaves the
  choice open; INVALID_ARGUMENT says "this is your mistake", and ALREADY_EXISTS would read
  as a resource conflict).
- Same id while the first request is still running: ABORTED (retry for its result).
- request_id must be a UUID4 (``xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx``).

A response holding a secret shown once (an API key's plaintext) must not be stored: pass
``redact`` to :meth:`Claim.complete`; a replay then answers the redacted response.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from collections.abc import Callable
from typing import Generic, TypeVar

from google.protobuf import message
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import Aborted, InvalidArgument
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.sql import flush
from mesh.kit.tables import IdempotencyKeyRow

TTL = datetime.timedelta(hours=24)
REQUEST_ID_FIELD = "request_id"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UUID4_RULE = "must be a UUID4 such as 123e4567-e89b-42d3-a456-426614174000"

ResponseT = TypeVar("ResponseT", bound=message.Message)


def request_id_problem(request_id: str) -> str | None:
    """Why a request_id is unacceptable (empty is fine: no deduplication), or ``None``."""
    if not request_id or UUID4.fullmatch(request_id.lower()):
        return None
    return UUID4_RULE


def fingerprint(method: str, request: message.Message, field: str = REQUEST_ID_FIELD) -> str:
    """SHA-256 of the method and the request with its request_id cleared."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField(field)
    digest = hashlib.sha256(method.encode() + b"\0")
    digest.update(copy.SerializeToString(deterministic=True))
    return digest.hexdigest()


@dataclasses.dataclass(slots=True)
class Claim(Generic[ResponseT]):
    """A request_id claimed by the running transaction, or the response it already had.

    Attributes:
        replay: the first response for this request_id, or ``None`` when this request is new.

    """

    replay: ResponseT | None
    _row: IdempotencyKeyRow | None = None

    async def complete(
        self,
        session: AsyncSession,
        response: ResponseT,
        *,
        redact: Callable[[ResponseT], ResponseT] | None = None,
    ) -> None:
        """Store the response of a new request (a no-op without request_id or on a replay)."""
        if self._row is None or self.replay is not None:
            return
        stored = redact(response) if redact is not None else response
        self._row.response = stored.SerializeToString(deterministic=True)
        await session.flush()


class IdempotencyStore:
    """Claims request_ids in ``idempotency_keys``."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, ttl: datetime.timedelta = TTL) -> None:
        self._clock = clock
        self._ttl = ttl

    async def claim(
        self,
        session: AsyncSession,
        *,
        method: str,
        organization_id: str,
        principal: str,
        request: message.Message,
        response_type: type[ResponseT],
        field: str = REQUEST_ID_FIELD,
    ) -> Claim[ResponseT]:
        """Claim the request's request_id in this transaction, or find the first response.

        Args:
            session: the transaction that makes the effect (the claim commits with it).
            method: the RPC's name (``CreateAgent``).
            organization_id: the organisation the request acts in.
            principal: who asks (recorded, for support).
            request: the request message, carrying the request_id in ``field``.
            response_type: the response message class, to decode a replay.
            field: the request_id field's name.

        Raises:
            InvalidArgument: request_id is not a UUID4, or was used with another request.
            Aborted: a request with this request_id is still being handled.

        """
        request_id: str = getattr(request, field)
        if not request_id:
            return Claim(None)
        if (problem := request_id_problem(request_id)) is not None:
            raise InvalidArgument(f"{field} {problem}", {field: problem})
        request_id = request_id.lower()
        print_ = fingerprint(method, request, field)
        now = self._clock.now()
        key = (organization_id, method, request_id)
        found = await session.get(IdempotencyKeyRow, key)
        if found is not None and found.create_time >= now - self._ttl:
            if found.fingerprint != print_:
                problem = "was already used with a different request; use a new request_id"
                raise InvalidArgument(f"{field} {problem}", {field: problem})
            if not found.response:
                raise Aborted(f"a request with this {field} is in progress; retry to get its result")
            return Claim(response_type.FromString(found.response))
        if found is not None:  # expired: the id may be used afresh
            await session.execute(
                delete(IdempotencyKeyRow).where(
                    IdempotencyKeyRow.organization_id == organization_id,
                    IdempotencyKeyRow.method == method,
                    IdempotencyKeyRow.request_id == request_id,
                )
            )
            session.expunge(found)
        row = IdempotencyKeyRow(
            organization_id=organization_id,
            method=method,
            request_id=request_id,
            principal=principal,
            fingerprint=print_,
            response=b"",
            create_time=now,
        )
        session.add(row)
        await flush(session, exists=Aborted(f"a request with this {field} is in progress; retry to get its result"))
        return Claim(None, row)

    async def prune(self, session: AsyncSession) -> int:
        """Forget keys older than the TTL; how many were removed."""
        result = await session.execute(
            delete(IdempotencyKeyRow).where(IdempotencyKeyRow.create_time < self._clock.now() - self._ttl)
        )
        return int(getattr(result, "rowcount", 0) or 0)
