"""What every server interceptor here does to a method handler: wrap its one behaviour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def wrap_behaviour(handler: Any, wrap: Callable[[Any], Any]) -> Any:
    """The handler with its behaviour (whichever call kind it serves) replaced by ``wrap(behaviour)``."""
    for kind in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return handler._replace(**{kind: wrap(behaviour)})
    return handler
