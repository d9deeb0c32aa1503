"""Retried attempts (grpc-previous-rpc-attempts) are counted per method on the default registry."""

from __future__ import annotations

import json
from typing import Any

import grpc
from prometheus_client import REGISTRY

from interceptors.retried_attempts import counting_retries
from tests.support.resilience import SERVICE, channel_to, echo_server, method

RETRY = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.01s",
                "backoffMultiplier": 1,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


async def test_each_retry_is_counted_once() -> None:
    attempts = 0

    async def flaky(request: bytes, context: Any) -> bytes:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "again")
        return request

    path = f"/{SERVICE}/Flaky"
    before = REGISTRY.get_sample_value("vocelio_server_retried_attempts_total", {"method": path}) or 0.0
    options = [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(RETRY))]
    async with echo_server({"Flaky": flaky}, [counting_retries]) as port, channel_to(port, options=options) as channel:
        assert await method(channel, "Flaky")(b"x") == b"x"
        assert await method(channel, "Flaky")(b"y") == b"y"  # a first attempt that succeeds is not counted
    assert REGISTRY.get_sample_value("vocelio_server_retried_attempts_total", {"method": path}) == before + 2
