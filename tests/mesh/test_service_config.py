"""The service config generated from the contracts, and gRPC core applying it to a real server."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from mesh import service_config
from mesh.config import Settings
from mesh.registry import default_registry
from runtime.clients import MeshClients
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

REGISTRY = default_registry()
IDENTITY = REGISTRY.service("identity")
AGENTS = REGISTRY.service("agents")


def _entry_for(config: dict[str, Any], service: str, method: str) -> dict[str, Any] | None:
    for entry in config["methodConfig"]:
        if {"service": service, "method": method} in entry["name"]:
            found: dict[str, Any] = entry
            return found
    return None


def test_idempotent_and_request_id_methods_are_retried_on_unavailable_only() -> None:
    config = service_config.service_config(REGISTRY, AGENTS, Settings())
    get = _entry_for(config, AGENTS.full_name, "GetAgent")
    create = _entry_for(config, AGENTS.full_name, "CreateAgent")  # not idempotent, but has request_id
    assert get is not None and create is not None
    policy = {
        "maxAttempts": 3,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    assert get["retryPolicy"] == policy
    assert create["retryPolicy"] == policy
    assert config["retryThrottling"] == {"maxTokens": 10, "tokenRatio": 0.1}


def test_a_method_neither_idempotent_nor_deduplicated_is_not_retried() -> None:
    method = REGISTRY.method("/vocelio.identity.v1.IdentityService/IssueToken")
    assert method is not None and method.policy is not None
    assert not method.policy.idempotent and not service_config.has_request_id(REGISTRY, method)
    entry = _entry_for(service_config.service_config(REGISTRY, IDENTITY, Settings()), IDENTITY.full_name, "IssueToken")
    assert entry is not None
    assert "retryPolicy" not in entry
    assert entry["timeout"] == "10s"  # AUTH class


def test_timeouts_follow_the_rate_limit_class_and_streams_get_none() -> None:
    settings = Settings(client_timeout_read=0.25, client_timeout_write=7, client_timeout_expensive=42)
    config = service_config.service_config(REGISTRY, IDENTITY, settings)
    assert _entry_for(config, IDENTITY.full_name, "GetUser")["timeout"] == "0.25s"  # type: ignore[index]
    assert _entry_for(config, IDENTITY.full_name, "UpdateUser")["timeout"] == "7s"  # type: ignore[index]
    stream = _entry_for(config, IDENTITY.full_name, "StreamRevocations")
    assert stream is not None and "timeout" not in stream
    timeouts = service_config.method_timeouts(REGISTRY, IDENTITY, settings)
    assert "/vocelio.identity.v1.IdentityService/StreamRevocations" not in timeouts
    assert timeouts["/vocelio.identity.v1.IdentityService/GetUser"] == 0.25


def test_every_method_of_every_service_appears_once_and_the_json_is_what_grpc_reads() -> None:
    for spec in REGISTRY:
        config = service_config.service_config(REGISTRY, spec, Settings())
        names = [(n["service"], n["method"]) for e in config["methodConfig"] for n in e["name"]]
        assert len(names) == len(set(names))
        options = dict(service_config.channel_options(REGISTRY, spec, Settings()))
        assert options["grpc.enable_retries"] == 1
        assert json.loads(options["grpc.service_config"]) == config


def test_one_attempt_turns_retries_off() -> None:
    config = service_config.service_config(REGISTRY, AGENTS, Settings(client_retry_max_attempts=1))
    assert "retryThrottling" not in config
    assert all("retryPolicy" not in entry for entry in config["methodConfig"])


class _FlakyIdentity(identity_service_pb2_grpc.IdentityServiceServicer):
    """Answers UNAVAILABLE to the first ``failures`` attempts of each method, optionally with pushback."""

    def __init__(self, failures: int, pushback: str | None = None) -> None:
        self.failures = failures
        self.pushback = pushback
        self.attempts: dict[str, list[tuple[float, str | None]]] = {}

    async def _attempt(self, method: str, context: Any) -> None:
        metadata = dict(context.invocation_metadata())
        seen = self.attempts.setdefault(method, [])
        seen.append((time.monotonic(), metadata.get("grpc-previous-rpc-attempts")))
        if len(seen) <= self.failures:
            if self.pushback is not None:
                context.set_trailing_metadata((("grpc-retry-pushback-ms", self.pushback),))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    async def GetJwks(self, request: Any, context: Any) -> Any:
        await self._attempt("GetJwks", context)
        return identity_service_pb2.GetJwksResponse()

    async def IssueToken(self, request: Any, context: Any) -> Any:
        await self._attempt("IssueToken", context)
        return identity_service_pb2.IssueTokenResponse(access_token="t")


@contextlib.asynccontextmanager
async def _identity(servicer: _FlakyIdentity, settings: Settings) -> AsyncIterator[grpc.aio.Channel]:
    """The flaky identity on port 0, reached through MeshClients' own (service-configured) channel."""
    server = grpc.aio.server()
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    clients = MeshClients("agents", settings, REGISTRY, ports={"identity": port})
    try:
        yield clients.plain_channel("identity")
    finally:
        await clients.close()
        await server.stop(None)


FAST = Settings(client_retry_max_attempts=4, client_retry_initial_backoff=0.01, client_retry_max_backoff=0.05)


async def test_an_idempotent_method_is_retried_after_unavailable() -> None:
    servicer = _FlakyIdentity(failures=2)
    async with _identity(servicer, FAST) as channel:
        await identity_service_pb2_grpc.IdentityServiceStub(channel).GetJwks(identity_service_pb2.GetJwksRequest())
    assert [previous for _, previous in servicer.attempts["GetJwks"]] == [None, "1", "2"]


async def test_a_method_that_is_not_safe_to_repeat_is_not_retried() -> None:
    servicer = _FlakyIdentity(failures=2)
    async with _identity(servicer, FAST) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await identity_service_pb2_grpc.IdentityServiceStub(channel).IssueToken(
                identity_service_pb2.IssueTokenRequest(grant_type="client_credentials")
            )
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    assert len(servicer.attempts["IssueToken"]) == 1


async def test_server_pushback_is_honoured() -> None:
    # A positive pushback replaces the (10 ms) backoff: the retry comes no sooner than it.
    servicer = _FlakyIdentity(failures=1, pushback="300")
    async with _identity(servicer, FAST) as channel:
        await identity_service_pb2_grpc.IdentityServiceStub(channel).GetJwks(identity_service_pb2.GetJwksRequest())
    (first, _), (second, _) = servicer.attempts["GetJwks"]
    assert second - first >= 0.29


async def test_negative_pushback_stops_the_retries() -> None:
    servicer = _FlakyIdentity(failures=3, pushback="-1")
    async with _identity(servicer, FAST) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await identity_service_pb2_grpc.IdentityServiceStub(channel).GetJwks(identity_service_pb2.GetJwksRequest())
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    assert len(servicer.attempts["GetJwks"]) == 1
