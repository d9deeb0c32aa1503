"""The rate limit rule: which bucket a call draws from, and the error when it is empty.

Buckets are keyed by (service, organisation, principal, method class): a burst of cheap
reads never starves a login or a write, one organisation's callers never spend another's
budget, and each service limits its own traffic. A call to a public method has no
principal; it draws from its client address's bucket (the address the authentication
wrapper settled: the edge's vouched ``x-forwarded-for``, else the transport peer).

Service principals (``services/*``) are not rate-limited: their calls either carry a
caller's credential (that caller is limited at the first hop, under its own name) or are
the mesh's own work (revocation stream, audit delivery, token refresh), which must not be
starved by user traffic. Load shedding still protects a process from them.
"""

from __future__ import annotations

from collections.abc import Mapping

from mesh.errors import ResourceExhausted
from mesh.kit.caller import current_client_address
from mesh.limits.buckets import BucketStore, LocalBuckets
from mesh.limits.rates import Rate
from mesh.principal import Principal, PrincipalKind
from vocelio.api.v1 import policy_pb2

CLASS_PREFIX = "RATE_LIMIT_CLASS_"


def class_name(rate_class: int) -> str:
    """The short name of a ``RateLimitClass`` value (``READ``)."""
    return str(policy_pb2.RateLimitClass.Name(rate_class)).removeprefix(CLASS_PREFIX)


class RateLimiter:
    """Token buckets per (service, organisation, principal or address, class).

    Attributes:
        scope: the service whose calls are limited (part of every key, so a store shared
            by several services keeps their budgets apart).

    """

    def __init__(self, scope: str, rates: Mapping[int, Rate | None], store: BucketStore | None = None) -> None:
        """A limiter with a rate per ``RateLimitClass`` value (``None`` or absent: no limit)."""
        self.scope = scope
        self._rates = dict(rates)
        self.store: BucketStore = store if store is not None else LocalBuckets()
        # In-process buckets are taken without a coroutine: the hot path is a look-up and arithmetic.
        self._take_now = self.store.take_now if isinstance(self.store, LocalBuckets) else None

    def rate_for(self, rate_class: int) -> Rate | None:
        """The rate of a method class, or ``None`` when the class is not rate-limited."""
        return self._rates.get(rate_class)

    async def admit(self, rate_class: int, rate: Rate, principal: Principal | None) -> None:
        """Take a token from the principal's bucket for one call, or refuse it.

        Args:
            rate_class: the method's ``RateLimitClass`` value.
            rate: that class's rate (:meth:`rate_for`).
            principal: the caller; ``None`` (authentication did not run) draws from the
                bucket of the call's client address instead.

        Raises:
            ResourceExhausted: the bucket is empty; carries the wait as RetryInfo and the
                quota as QuotaFailure.

        """
        if principal is None:
            await self.admit_address(rate_class, rate, current_client_address())
            return
        if self._take_now is not None:
            self.admit_now(rate_class, rate, principal)
            return
        if principal.kind is PrincipalKind.SERVICE:
            return
        wait = await self.store.take((self.scope, principal.organization_id, principal.subject, rate_class), rate)
        if wait > 0.0:
            raise self.refusal(rate_class, rate, principal.subject, wait)

    @property
    def local(self) -> bool:
        """The buckets are in this process: :meth:`admit_now` may be used instead of :meth:`admit`."""
        return self._take_now is not None

    def admit_now(self, rate_class: int, rate: Rate, principal: Principal) -> None:
        """:meth:`admit` for an authenticated call with in-process buckets, without a coroutine.

        Raises:
            ResourceExhausted: as :meth:`admit`.
            RuntimeError: the store is not in-process (:attr:`local` is false).

        """
        take_now = self._take_now
        if take_now is None:
            raise RuntimeError("admit_now needs the in-process buckets; await admit() instead")
        if principal.kind is PrincipalKind.SERVICE:
            return
        wait = take_now((self.scope, principal.organization_id, principal.subject, rate_class), rate)
        if wait > 0.0:
            raise self.refusal(rate_class, rate, principal.subject, wait)

    async def admit_address(self, rate_class: int, rate: Rate, address: str) -> None:
        """Take a token from the client address's bucket (a public method's call), or refuse it.

        Raises:
            ResourceExhausted: as :meth:`admit`.

        """
        subject = "client:" + address
        key = (self.scope, "", subject, rate_class)
        take_now = self._take_now
        wait = take_now(key, rate) if take_now is not None else await self.store.take(key, rate)
        if wait > 0.0:
            raise self.refusal(rate_class, rate, subject, wait)

    def refusal(self, rate_class: int, rate: Rate, subject: str, wait: float) -> ResourceExhausted:
        """The error of a refused call: RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure."""
        name = class_name(rate_class)
        whose = "client address" if subject.startswith("client:") else "principal"
        return (
            ResourceExhausted(f"rate limit for {name} calls to {self.scope} exceeded; retry in {wait:.3g} s")
            .with_retry_delay(wait)
            .with_quota_violation(subject, f"{name} calls to {self.scope}: {rate.describe()}, per {whose}")
        )
