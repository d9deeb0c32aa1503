"""Answers remembered for a while, so that a retried SignUp for a taken address repeats its first answer.

SignUp answers an address that has an account already with a user and an organisation
that are never created (see ``signup``). A retry with the same ``request_id`` must repeat
that answer, as a real sign-up's retry repeats the stored user, or comparing the two
answers would tell the address apart. Kept in memory, per process, bounded (least
recently used forgotten) and for as long as request ids are remembered (24 hours).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")
REQUEST_ID_LIFETIME = 24 * 3600.0


class RememberedAnswers(Generic[ValueT]):
    """Values by key for ``lifetime`` seconds, at most ``max_keys`` of them."""

    def __init__(
        self,
        *,
        lifetime: float = REQUEST_ID_LIFETIME,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self.max_keys = max_keys
        self.clock = clock
        self._entries: collections.OrderedDict[str, tuple[float, ValueT]] = collections.OrderedDict()

    def get(self, key: str) -> ValueT | None:
        """The value remembered for ``key``, unless it was forgotten or has expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        return entry[1]

    def remember(self, key: str, value: ValueT) -> None:
        """Keep ``value`` for ``key``."""
        self._entries[key] = (self.clock() + self.lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
