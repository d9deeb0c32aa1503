"""Server side: count the calls that are gRPC retries of an earlier attempt.

gRPC core retries below the client interceptors (``mesh/service_config.py``), so no client
code sees the attempts; but every retried attempt carries ``grpc-previous-rpc-attempts``
(gRFC A6), which the server can count. ``vocelio_server_retried_attempts_total{method}``
on the process's default Prometheus registry is that count. The metadata is scanned only
for its key: a handful of comparisons per call.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from interceptors.chain import Behaviour, Check, Guard
from mesh.call_facts import invocation_metadata

PREVIOUS_ATTEMPTS = "grpc-previous-rpc-attempts"

RETRIED_ATTEMPTS = Counter(
    "vocelio_server_retried_attempts_total",
    "Calls received that are gRPC retries of an earlier attempt (grpc-previous-rpc-attempts).",
    ["method"],
)


def _retry_counter(method: str, _behaviour: Behaviour) -> Check:
    retried = RETRIED_ATTEMPTS.labels(method=method)

    def count(_request: Any, context: Any) -> None:
        # A plain loop, not any(...): no generator object per call.
        for key, _ in invocation_metadata(context):
            if key == PREVIOUS_ATTEMPTS:
                retried.inc()
                return

    return count


counting_retries = Guard(_retry_counter)
"""The guard counting in ``vocelio_server_retried_attempts_total`` the calls that are retries."""
