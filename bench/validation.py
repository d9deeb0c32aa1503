"""``make bench-validation``: what checking a request against its buf.validate rules costs, in ns per call.

Four requests: one whose type carries no rule (the common case, which must cost next to nothing), a valid
and an invalid one of the test-only ``validated.v1.EchoRequest``, and a valid ``CreateAgentRequest`` from the
contracts. Each figure is the best of several timed rounds, so a busy machine inflates it as little as can be.
"""

from __future__ import annotations

import argparse
import functools
import sys
import timeit
import uuid
from collections.abc import Callable

from google.protobuf.message import Message
from validated.v1 import validated_pb2

from mesh.validation_rules import violations
from vocelio.agents.v1 import agent_pb2, agents_service_pb2


def cases() -> dict[str, Message]:
    """The requests timed, by label."""
    return {
        "no rules (validated.v1.PlainRequest)": validated_pb2.PlainRequest(name="x"),
        "valid (validated.v1.EchoRequest)": validated_pb2.EchoRequest(
            name="echo",
            page_size=50,
            request_id=str(uuid.uuid4()),
            labels={"team": "sales"},
            draft=validated_pb2.Draft(voice="aria"),
            tags=["a", "b"],
            phone_number="+14155550100",
        ),
        "invalid (validated.v1.EchoRequest)": validated_pb2.EchoRequest(
            name="", page_size=-1, labels={"Team": "x"}, phone_number="12"
        ),
        "valid (agents.v1.CreateAgentRequest)": agents_service_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(display_name="Support", labels={"team": "sales"}),
            agent_id="support-line",
            request_id=str(uuid.uuid4()),
        ),
    }


def nanoseconds_per_call(call: Callable[[], object], number: int, rounds: int) -> float:
    """The best of ``rounds`` timings of ``number`` calls, per call, in nanoseconds."""
    return min(timeit.repeat(call, number=number, repeat=rounds)) / number * 1e9


def main() -> int:
    """Time each case and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for label, request in cases().items():
        violations(request)  # compile the type's rules outside the timing, as the first real call would
        cost = nanoseconds_per_call(functools.partial(violations, request), args.number, args.rounds)
        print(f"{label:<42} {cost:>10,.0f} ns/call  ({len(violations(request))} violations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
