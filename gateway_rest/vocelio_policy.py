"""What the OpenAPI document says about Vocelio's ``(vocelio.api.v1.policy)`` method option.

Pass these to :func:`gateway_rest.openapi.build_openapi` as ``is_public`` and
``operation_extras`` when the catalogue holds Vocelio's contracts.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor

from vocelio.api.v1 import policy_pb2

# The generated stubs type extensions loosely; this is the typed handle.
_POLICY_OPTION: Any = policy_pb2.policy


def _policy(method: descriptor.MethodDescriptor) -> policy_pb2.MethodPolicy | None:
    options = method.GetOptions()
    if not options.HasExtension(_POLICY_OPTION):
        return None
    policy: policy_pb2.MethodPolicy = options.Extensions[_POLICY_OPTION]
    return policy


def vocelio_is_public(method: descriptor.MethodDescriptor) -> bool:
    """The method needs no credential (its policy says ``public: true``)."""
    policy = _policy(method)
    return policy is not None and policy.public


def vocelio_operation_extras(method: descriptor.MethodDescriptor) -> dict[str, Any]:
    """``x-vocelio-permission`` and ``x-vocelio-rate-limit-class`` from the method's policy."""
    policy = _policy(method)
    if policy is None:
        return {}
    extras: dict[str, Any] = {}
    if policy.permission:
        extras["x-vocelio-permission"] = policy.permission
    if policy.rate_limit_class:
        extras["x-vocelio-rate-limit-class"] = policy_pb2.RateLimitClass.Name(policy.rate_limit_class)
    if policy.idempotent:
        extras["x-vocelio-idempotent"] = True
    return extras
