"""Server side: every call draws a token from its caller's bucket for the method's class.

The class is the contract's ``rate_limit_class`` (READ, WRITE, EXPENSIVE, AUTH); the rule
and the buckets are :class:`mesh.limits.limiter.RateLimiter`'s. An empty bucket is
RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo`` (when a token will be there) and
``google.rpc.QuotaFailure`` (whose budget ran out), before the handler runs; the edge
answers 429 with ``Retry-After``.

Runs after authentication (it needs the principal, or for public methods the client
address) and before RBAC, so calls a caller is not allowed to make still cost it tokens.
Which class a method has is looked up once, at registration; methods of an unlimited
class, STREAM methods (limited by :mod:`interceptors.stream_limit`), infrastructure and
methods the registry does not know are not wrapped at all.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from interceptors.auth import INFRASTRUCTURE
from interceptors.chain import Behaviour, Check, Guard, WrapperInterceptor
from mesh.config import Settings
from mesh.kit.caller import current_client_address
from mesh.limits.limiter import RateLimiter
from mesh.limits.rates import Rate
from mesh.principal import current_or_none
from mesh.registry import Registry
from vocelio.api.v1 import policy_pb2

READ = policy_pb2.RATE_LIMIT_CLASS_READ
WRITE = policy_pb2.RATE_LIMIT_CLASS_WRITE
EXPENSIVE = policy_pb2.RATE_LIMIT_CLASS_EXPENSIVE
AUTH = policy_pb2.RATE_LIMIT_CLASS_AUTH


def limiter_for(service: str, settings: Settings) -> RateLimiter:
    """The service's limiter with the configured rate of each class (in-process buckets)."""
    rates: dict[int, Rate | None] = {
        READ: settings.rate_limit_read,
        WRITE: settings.rate_limit_write,
        EXPENSIVE: settings.rate_limit_expensive,
        AUTH: settings.rate_limit_auth,
    }
    return RateLimiter(service, rates)


def rate_limited(registry: Registry, limiter: RateLimiter) -> Guard:
    """The guard that refuses a call once its caller's bucket for the method's class is empty."""

    def check_for(path: str, _behaviour: Behaviour) -> Check | None:
        if path.startswith(INFRASTRUCTURE):
            return None
        method = registry.method(path)
        if method is None or method.policy is None:
            return None
        rate_class = method.policy.rate_limit_class
        rate = limiter.rate_for(rate_class)
        if rate is None:
            return None
        by_principal = limiter.admit
        if method.policy.public:
            by_address = limiter.admit_address

            def public_check(_request: Any, _context: Any) -> Awaitable[None]:
                return by_address(rate_class, rate, current_client_address())

            return public_check

        if limiter.local:
            admit_now = limiter.admit_now

            def local_check(_request: Any, _context: Any) -> Awaitable[None] | None:
                principal = current_or_none()
                if principal is None:
                    return by_principal(rate_class, rate, None)
                admit_now(rate_class, rate, principal)  # the hot path: no coroutine, no await
                return None

            return local_check

        def shared_check(_request: Any, _context: Any) -> Awaitable[None]:
            return by_principal(rate_class, rate, current_or_none())

        return shared_check

    return Guard(check_for)


class RateLimitInterceptor(WrapperInterceptor):
    """:func:`rate_limited` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self, registry: Registry, limiter: RateLimiter) -> None:
        super().__init__(rate_limited(registry, limiter))
