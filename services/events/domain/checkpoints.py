"""How a consumer checkpoint may move.

A checkpoint follows either the global log (``stream`` empty, a ``global_position``) or one
stream (a ``stream_version``); the first save fixes which. Positions move forwards; a lower
one needs ``allow_rewind`` ("replay from there") and is otherwise FAILED_PRECONDITION
``CHECKPOINT_REWIND``; an equal one changes nothing.
"""

from __future__ import annotations

import enum

from mesh.errors import FailedPrecondition, InvalidArgument
from services.events.domain.appends import REASONS
from vocelio.events.v1 import events_errors_pb2, events_service_pb2

MAX_STATE = 1024


class Move(enum.Enum):
    """What a save does to a saved position."""

    CREATE = "create"
    FORWARD = "forward"
    SAME = "same"
    REWIND = "rewind"


def requested_position(request: events_service_pb2.SaveConsumerCheckpointRequest) -> tuple[str, int]:
    """``("global_position" | "stream_version", value)`` of a save, checked against its stream.

    Raises:
        InvalidArgument: no position, the wrong kind for the stream, a negative value, or
            consumer_state over 1,024 characters.

    """
    which = request.WhichOneof("position")
    if which is None:
        raise InvalidArgument("a position is required", {"global_position": "set global_position or stream_version"})
    wanted = "stream_version" if request.stream else "global_position"
    if which != wanted:
        problem = (
            "a stream consumer saves stream_version"
            if request.stream
            else ("a global-log consumer saves global_position")
        )
        raise InvalidArgument(problem, {which: problem})
    value = getattr(request, which)
    if value < (-1 if which == "stream_version" else 0):
        raise InvalidArgument(f"{which} must not be negative", {which: "must not be negative"})
    if len(request.consumer_state) > MAX_STATE:
        raise InvalidArgument("consumer_state is too long", {"consumer_state": "at most 1024 characters"})
    return which, value


def plan_move(saved: int | None, requested: int, *, allow_rewind: bool) -> Move:
    """The move from ``saved`` (``None`` before the first save) to ``requested``.

    Raises:
        FailedPrecondition: ``CHECKPOINT_REWIND``, a lower position without ``allow_rewind``.

    """
    if saved is None:
        return Move.CREATE
    if requested > saved:
        return Move.FORWARD
    if requested == saved:
        return Move.SAME
    if allow_rewind:
        return Move.REWIND
    raise FailedPrecondition(
        f"the checkpoint is at {saved}; moving it back to {requested} needs allow_rewind"
    ).with_reason(
        REASONS, events_errors_pb2.ERROR_REASON_CHECKPOINT_REWIND, {"saved": str(saved), "requested": str(requested)}
    )
