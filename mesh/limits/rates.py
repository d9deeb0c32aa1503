"""A token-bucket rate (``per_second`` refill, ``burst`` capacity) and its one text form.

``VOCELIO_RATE_LIMIT_<CLASS>`` values read ``<per second>:<burst>`` (``50:100``: 50 calls a
second on average, up to 100 at once after a quiet spell) or ``off`` (no limit).
"""

from __future__ import annotations

import dataclasses
import math

OFF = "off"


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """How fast a bucket refills and how much it holds.

    Attributes:
        per_second: tokens added per second (the sustained rate).
        burst: the bucket's capacity, and its content when first used.

    """

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise ValueError(f"the rate must be a positive number of calls per second, got {self.per_second}")
        if self.burst < 1:
            raise ValueError(f"the burst must be at least 1, got {self.burst}")

    def __str__(self) -> str:
        return f"{self.per_second:g}:{self.burst}"

    def describe(self) -> str:
        """The rate in words, for error messages (``50 per second, bursts of 100``)."""
        return f"{self.per_second:g} per second, bursts of {self.burst}"


def parse_rate(text: str) -> Rate | None:
    """``"<per second>:<burst>"`` as a :class:`Rate`, or ``None`` for ``off``.

    Raises:
        ValueError: the text is neither (the message says what is expected).

    """
    text = text.strip().lower()
    if text == OFF:
        return None
    per_second, colon, burst = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return Rate(float(per_second), int(burst))
    except ValueError as error:
        detail = f" ({error})" if str(error) else ""
        expected = "expected '<calls per second>:<burst>' such as 50:100, or 'off'"
        raise ValueError(f"{expected}; got {text!r}{detail}") from None
