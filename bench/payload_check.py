"""``make bench-payload``: µs per event of the event store's payload check, before and after, per event type.

Every typed append has its ``Struct`` payload checked against the message its event type declares. The old
check (``EventTypes.decode``: ``MessageToDict`` then ``ParseDict``, pure Python) is timed next to the compiled
one (``EventTypes.check``, :mod:`mesh.payload_check`) on the bench's 512-byte ``agent.updated`` payload
(``bench.events.make_payload``; goal ≤ 6 µs) and on one full sample payload per event type
(``mesh.samples.example``: every field set). Each figure is the best of several rounds, so a busy machine
inflates it as little as can be, and
the time is the thread's CPU time; both checks must agree on every payload or the run fails.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from google.protobuf import struct_pb2

from bench.events import make_payload
from mesh.errors import InvalidArgument
from mesh.event_types import EventTypes, default_event_types
from mesh.samples import example

GOAL_US = 6.0
"""µs per event the new check should stay under on the bench payload."""


def old_check(types: EventTypes, event_type: str, data_schema: str, data: struct_pb2.Struct) -> str | None:
    """The check appends made before: build the message with ``json_format``."""
    try:
        types.decode(event_type, data_schema, data)
    except InvalidArgument as error:
        return str(error)
    return None


def microseconds(call: Callable[[], object], number: int, rounds: int) -> float:
    """The best of ``rounds`` timings of ``number`` calls, per call, in µs of this thread's CPU time.

    CPU time rather than wall time: on a shared machine the wall clock also counts the time other processes
    held the core, which is not what one check costs.
    """
    return min(timeit.repeat(call, number=number, repeat=rounds, timer=time.thread_time)) / number * 1e6


def payloads(types: EventTypes) -> list[tuple[str, str, str, struct_pb2.Struct]]:
    """(label, type, data_schema, data): the bench payload first, then one sample per event type."""
    bench = make_payload("org_bench", 512)
    found = [("bench agent.updated (512 B)", bench.type, bench.data_schema, _struct(bench.data))]
    for event in types:
        encoded = types.encode(example(event.message_class))
        found.append((event.type, encoded.type, encoded.data_schema, _struct(encoded.data)))
    return found


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(data)
    return result


def main() -> int:
    """Time both checks on every payload; print a table and a summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=300, help="calls per round of the old check (new: 20×)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, the best kept (default 5)")
    parser.add_argument("--bench-only", action="store_true", help="time the bench payload only")
    args = parser.parse_args()
    types = default_event_types()
    cases = payloads(types)[:1] if args.bench_only else payloads(types)
    print(f"{'payload':<44} {'old µs':>9} {'new µs':>9} {'ratio':>7}")
    olds: list[float] = []
    news: list[float] = []
    for label, event_type, data_schema, data in cases:
        old_verdict = old_check(types, event_type, data_schema, data)
        new_verdict = types.check(event_type, data_schema, data)
        if (old_verdict is None) != (new_verdict is None):
            print(f"{label}: the checks disagree: old {old_verdict!r}, new {new_verdict!r}", file=sys.stderr)
            return 1
        old = microseconds(functools.partial(old_check, types, event_type, data_schema, data), args.number, args.rounds)
        new = microseconds(functools.partial(types.check, event_type, data_schema, data), args.number * 20, args.rounds)
        olds.append(old)
        news.append(new)
        print(f"{label:<44} {old:>9.2f} {new:>9.2f} {old / new:>6.1f}×")
    bench_new = news[0]
    print(f"\nbench payload: old {olds[0]:.2f} µs, new {bench_new:.2f} µs per event ({olds[0] / bench_new:.1f}×)")
    if len(news) > 1:
        print(
            f"per event type ({len(news) - 1}): new median {statistics.median(news[1:]):.2f} µs, "
            f"max {max(news[1:]):.2f} µs; old median {statistics.median(olds[1:]):.2f} µs"
        )
    verdict = "goal met" if bench_new <= GOAL_US else "GOAL MISSED"
    print(f"goal ≤ {GOAL_US:.0f} µs on the bench payload: {verdict} ({1e6 / bench_new:,.0f} checks/s on one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
