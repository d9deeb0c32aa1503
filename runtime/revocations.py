"""Follow identity's revocation stream, so a revoked token is refused here within moments.

Catch-up from the last sequence seen, then live; on any failure, reconnect with backoff.
Every message (entries, the caught-up marker, identity's heartbeats) counts as news:
once the watcher has started, the set reads stale after ``VOCELIO_REVOCATION_MAX_STALENESS``
seconds without any, and the authenticator refuses credentials until the stream is back.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from mesh.revocations import RevocationSet
from mesh.tasks import cancel_and_wait
from runtime.clients import MeshClients

log = logging.getLogger(__name__)

_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class RevocationWatcher:
    """A background task feeding a :class:`RevocationSet` from identity."""

    def __init__(self, clients: MeshClients, revocations: RevocationSet) -> None:
        self._clients = clients
        self._revocations = revocations
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    def start(self) -> None:
        """Start following the stream."""
        self._revocations.follow()
        self._task = asyncio.create_task(self._run(), name="revocation-watcher")

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _run(self) -> None:
        from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

        failures = 0
        while True:
            try:
                stub = self._clients.stub("identity", identity_service_pb2_grpc.IdentityServiceStub)
                request = identity_service_pb2.StreamRevocationsRequest(after_sequence=self._revocations.last_sequence)
                async for message in stub.StreamRevocations(request):
                    failures = 0
                    self._revocations.heard()
                    if message.HasField("revocation"):
                        revocation = message.revocation
                        self._revocations.add(
                            int(revocation.kind),
                            token_id=revocation.token_id,
                            session=revocation.session,
                            principal=revocation.principal,
                            organization_id=revocation.organization_id,
                            key_id=revocation.key_id,
                            issued_before=revocation.issued_before.ToNanoseconds() / 1e9
                            if revocation.HasField("issued_before")
                            else 0.0,
                            expires_at=revocation.expire_time.ToNanoseconds() / 1e9
                            if revocation.HasField("expire_time")
                            else 0.0,
                            sequence=revocation.sequence,
                        )
                    if message.caught_up:
                        self.caught_up.set()
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, Exception) as error:  # noqa: BLE001 - reconnect whatever broke
                code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__
                level = logging.DEBUG if failures else logging.INFO
                log.log(level, "revocation stream interrupted (%s); reconnecting", code)
            delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
            failures += 1
            await asyncio.sleep(delay)
