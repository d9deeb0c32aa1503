"""The gRPC service config of a channel to one mesh service, generated from its contract.

gRPC core does retries (gRFC A6: exponential backoff with jitter, retryable codes, the
server's ``grpc-retry-pushback-ms``, retry throttling per upstream) and per-method
timeouts itself when a channel carries a service config; this module writes that config
from the registry, so no method is listed by hand and no retry loop runs in Python.

A method is retried on UNAVAILABLE only when repeating it cannot do harm: the contract
marks it ``idempotent``, or its request has a ``request_id`` (AIP-155), which the client
fills with a fresh UUID4 when the caller left it empty (``interceptors/client_idempotency.py``),
so the service answers a repeat with the first result instead of acting twice. The default
timeout follows the method's ``rate_limit_class``; long-lived streams get none. Both are
pure functions of the registry and the settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor

from mesh.config import Settings
from mesh.registry import MethodSpec, Registry, ServiceSpec
from vocelio.api.v1 import policy_pb2

REQUEST_ID_FIELD = "request_id"
RETRYABLE_CODES = ("UNAVAILABLE",)

_CLASS = policy_pb2.RateLimitClass


def class_timeouts(settings: Settings) -> dict[int, float | None]:
    """The default deadline (seconds) of each ``rate_limit_class``; ``None`` for streams."""
    return {
        _CLASS.RATE_LIMIT_CLASS_READ: settings.client_timeout_read,
        _CLASS.RATE_LIMIT_CLASS_WRITE: settings.client_timeout_write,
        _CLASS.RATE_LIMIT_CLASS_EXPENSIVE: settings.client_timeout_expensive,
        _CLASS.RATE_LIMIT_CLASS_AUTH: settings.client_timeout_auth,
        _CLASS.RATE_LIMIT_CLASS_STREAM: None,
    }


def has_request_id(registry: Registry, method: MethodSpec) -> bool:
    """Whether the method's request carries a string ``request_id`` (AIP-155)."""
    message = registry.pool.FindMessageTypeByName(method.input_type)
    field = message.fields_by_name.get(REQUEST_ID_FIELD)
    return field is not None and field.type == descriptor.FieldDescriptor.TYPE_STRING


def retryable(registry: Registry, method: MethodSpec) -> bool:
    """Whether gRPC may repeat the method on UNAVAILABLE: idempotent, or deduplicated by request id."""
    if method.client_streaming:
        return False  # a client stream cannot be replayed once it has been sent
    if method.policy is not None and method.policy.idempotent:
        return True
    return has_request_id(registry, method)


def method_timeout(method: MethodSpec, settings: Settings) -> float | None:
    """The method's default deadline in seconds, or ``None`` (streams, or a method without a policy)."""
    if method.server_streaming or method.client_streaming or method.policy is None:
        return None
    return class_timeouts(settings).get(method.policy.rate_limit_class)


def method_timeouts(registry: Registry, service: ServiceSpec, settings: Settings) -> dict[str, float]:
    """Map each gRPC path of ``service`` to its default deadline, for every method of ``service`` that has one."""
    timeouts = {}
    for method in service.methods:
        timeout = method_timeout(method, settings)
        if timeout is not None:
            timeouts[method.path] = timeout
    return timeouts


def request_id_methods(registry: Registry, service: ServiceSpec) -> frozenset[str]:
    """The gRPC paths of ``service``'s methods whose request has a ``request_id``."""
    return frozenset(m.path for m in service.methods if has_request_id(registry, m))


def retry_policy(settings: Settings) -> dict[str, Any] | None:
    """The gRFC A6 ``retryPolicy`` from the settings; ``None`` when retries are off (one attempt)."""
    if settings.client_retry_max_attempts < 2:
        return None
    return {
        "maxAttempts": settings.client_retry_max_attempts,
        "initialBackoff": _duration(settings.client_retry_initial_backoff),
        "maxBackoff": _duration(settings.client_retry_max_backoff),
        "backoffMultiplier": settings.client_retry_backoff_multiplier,
        "retryableStatusCodes": list(RETRYABLE_CODES),
    }


def service_config(registry: Registry, service: ServiceSpec, settings: Settings) -> dict[str, Any]:
    """The service config of a channel to ``service``: one ``methodConfig`` per distinct policy.

    Methods sharing (timeout, retried) share one entry, so the document stays small.
    """
    policy = retry_policy(settings)
    groups: dict[tuple[float | None, bool], list[dict[str, str]]] = {}
    for method in service.methods:
        key = (method_timeout(method, settings), policy is not None and retryable(registry, method))
        groups.setdefault(key, []).append({"service": service.full_name, "method": method.name})
    configs = []
    for (timeout, retried), names in sorted(groups.items(), key=lambda item: (item[0][0] or 0.0, item[0][1])):
        if timeout is None and not retried:
            continue
        entry: dict[str, Any] = {"name": names}
        if timeout is not None:
            entry["timeout"] = _duration(timeout)
        if retried:
            entry["retryPolicy"] = policy
        configs.append(entry)
    config: dict[str, Any] = {"methodConfig": configs}
    if policy is not None:
        config["retryThrottling"] = {
            "maxTokens": settings.client_retry_throttle_tokens,
            "tokenRatio": round(settings.client_retry_throttle_ratio, 3),
        }
    return config


def channel_options(
    registry: Registry, service: ServiceSpec, settings: Settings, base: Mapping[str, Any] | None = None
) -> list[tuple[str, Any]]:
    """Channel options carrying the service config (``grpc.service_config``, retries enabled)."""
    options = dict(base or {})
    options["grpc.enable_retries"] = 1
    options["grpc.service_config"] = json.dumps(service_config(registry, service, settings), separators=(",", ":"))
    return list(options.items())


def _duration(seconds: float) -> str:
    """A protobuf JSON Duration (``"0.1s"``, ``"5s"``)."""
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text}s"
