"""One etag for every resource: optimistic concurrency (AIP-154).

An etag is a hash of the resource's name, its creation time and its revision (a counter
that goes up on every change), salted with a fixed, public string so it cannot be matched
against a bare hash of those values. It is opaque: it never reveals the revision, so no
client builds on it being a number; a resource deleted and created again under the same
name gets new etags. A client sends back the etag it read; a mismatch is ABORTED.
"""

from __future__ import annotations

import datetime
import hashlib

from mesh.errors import Aborted
from mesh.kit.paging import time_key

# Not a secret: it only keeps etags from being plain hashes of guessable values.
_SALT = b"vocelio/etag/v1"


def etag(name: str, create_time: datetime.datetime, revision: int) -> str:
    """The etag of a resource at one revision (16 hex characters)."""
    seed = f"{name}\n{time_key(create_time)}\n{revision}".encode()
    return hashlib.blake2b(seed, digest_size=8, key=_SALT).hexdigest()


def check_etag(sent: str, current: str, *, what: str = "the resource") -> None:
    """Accept an empty etag (no check) or the current one.

    Raises:
        Aborted: the etag is stale: the resource changed since the caller read it.

    """
    if sent and sent != current:
        raise Aborted(f"{what} has changed since it was read (etag mismatch); read it again and retry")
