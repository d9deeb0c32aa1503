"""``make bench-protection``: what the server-protection wrappers add to a call, in µs per call.

Each wrapper (rate limit, stream limit, load shedding, and the three together) is composed
around a handler that returns at once, exactly as ``ChainedServer`` composes it, and awaited
in a loop with a user principal set; the figure is the wrapped loop minus the bare loop,
per call, best of several rounds, in CPU time (so other processes on a busy machine inflate
it as little as can be). The rate limit's bucket never empties here (the common
case: a call that passes). For the choice of store, one token take of the in-process
buckets is timed against the ``limits`` library's in-memory strategies, when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from interceptors.chain import Behaviour, Wrapper
from interceptors.inflight import InFlightCalls
from interceptors.load_shedding import shedding
from interceptors.rate_limit import READ, rate_limited
from interceptors.stream_limit import stream_limited
from mesh.limits.buckets import LocalBuckets
from mesh.limits.limiter import RateLimiter
from mesh.limits.rates import Rate
from mesh.limits.streams import StreamSlots
from mesh.principal import Principal, PrincipalKind, acting_as
from mesh.registry import default_registry

PATH = "/vocelio.agents.v1.AgentsService/GetAgent"
USER = Principal("users/bench", PrincipalKind.USER, "org_bench", "ADMIN", frozenset({"*"}))
FAST = Rate(1e12, 10**9)


async def _handler(request: Any, context: Any) -> Any:
    return request


def wrappers() -> dict[str, list[Wrapper]]:
    """The compositions timed, by label."""
    registry = default_registry()
    inflight = InFlightCalls()
    limit = rate_limited(registry, RateLimiter("agents", {READ: FAST}))
    streams = stream_limited(registry, StreamSlots(16), "agents")
    shed = shedding(lambda: inflight.count, 1000)
    return {
        "rate limit": [limit],
        "stream limit (a unary method: not wrapped)": [streams],
        "load shedding": [shed],
        "all three": [shed, limit, streams],
    }


def _composed(chain: list[Wrapper]) -> Behaviour:
    behaviour: Behaviour = _handler
    for wrap in reversed(chain):
        behaviour = wrap(PATH, behaviour)
    return behaviour


async def _seconds(behaviour: Behaviour, number: int) -> float:
    started = time.process_time()
    for _ in range(number):
        await behaviour(None, None)
    return time.process_time() - started


async def microseconds_added(chain: list[Wrapper], number: int, rounds: int) -> float:
    """The best-of-``rounds`` cost the chain adds to one call, in µs."""
    bare = _composed([])
    wrapped = _composed(chain)
    with acting_as(USER):
        added = [await _seconds(wrapped, number) - await _seconds(bare, number) for _ in range(rounds)]
    return max(0.0, min(added)) / number * 1e6


def store_costs(number: int, rounds: int) -> dict[str, float]:
    """One token take, µs: the in-process buckets and, when installed, the ``limits`` library."""
    buckets = LocalBuckets()
    key = ("agents", "org_bench", "users/bench", "1")
    costs: dict[str, Callable[[], object]] = {"LocalBuckets (token bucket)": lambda: buckets.take_now(key, FAST)}
    try:
        from limits import RateLimitItemPerSecond, storage, strategies  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        memory = storage.MemoryStorage()
        item = RateLimitItemPerSecond(10**9)
        for name in ("FixedWindowRateLimiter", "MovingWindowRateLimiter", "SlidingWindowCounterRateLimiter"):
            limiter: Any = getattr(strategies, name)(memory)
            costs[f"limits {name}"] = functools.partial(limiter.hit, item, "org_bench", "users/bench")
    timed = {
        label: min(timeit.repeat(call, number=number, repeat=rounds, timer=time.process_time))
        for label, call in costs.items()
    }
    return {label: seconds / number * 1e6 for label, seconds in timed.items()}


def main() -> int:
    """Time each composition and store and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=100_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for label, chain in wrappers().items():
        cost = asyncio.run(microseconds_added(chain, args.number, args.rounds))
        print(f"{label:<46} {cost:>8.3f} µs/call added")
    for label, cost in store_costs(args.number // 5, args.rounds).items():
        print(f"{label:<46} {cost:>8.3f} µs/take")
    return 0


if __name__ == "__main__":
    sys.exit(main())
