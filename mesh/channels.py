"""Options every internal gRPC channel of the mesh uses (edge → service, service → service).

A channel that found its upstream down waits out a reconnect backoff before it tries again,
and a call made meanwhile fails at once with UNAVAILABLE (unless it waits for ready). gRPC's
defaults (1 s growing to 120 s) suit the open internet; inside the mesh an upstream that
restarts is back within a second or two, and the edge usually starts before the services it
fronts, so the backoff starts short and stays short. Resilience policy (retries, breakers)
belongs to the client interceptors, not to the transport's backoff.
"""

from __future__ import annotations

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)
