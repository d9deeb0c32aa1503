"""Etags: optimistic concurrency for agents (AIP-154).

An agent's etag is derived from its id, its creation time and its revision, a counter
that goes up on every change; a client sends back the etag it read, and a mismatch
means someone else changed the agent in between. The etag is opaque: a hash, so
nobody builds on it being a number.
"""

from __future__ import annotations

import datetime
import hashlib

from mesh.errors import Aborted

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def etag(agent_id: str, create_time: datetime.datetime, revision: int) -> str:
    """The etag of an agent at one revision (16 hex characters)."""
    created_us = (create_time - _EPOCH) // datetime.timedelta(microseconds=1)
    seed = f"{agent_id}/{created_us}/{revision}"
    return hashlib.blake2b(seed.encode(), digest_size=8).hexdigest()


def check_etag(sent: str, current: str) -> None:
    """Accept an empty etag (no check) or the current one.

    Raises:
        Aborted: the etag is stale: the agent changed since the caller read it.

    """
    if sent and sent != current:
        raise Aborted("the agent has changed since it was read (etag mismatch); read it again and retry")
