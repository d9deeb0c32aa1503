"""Client side: each outgoing call gets the least of its method's default and the caller's budget.

The budget is what is left of the deadline of the call being served
(``interceptors/deadline.py`` publishes it), less ``client_deadline_margin`` for the answer to
travel back; the default comes from the method's ``rate_limit_class``
(``mesh.service_config``). When the budget is gone the call fails at once with
DEADLINE_EXCEEDED and is never sent: the original caller has given up or is about to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from interceptors.client_refusal import both_keys, method_name, refusal
from mesh.resilience.deadlines import CALLER_DEADLINE, TooLittleTime, outgoing_timeout


class DeadlineBudget:
    """The timeout rule of the calls to one upstream."""

    def __init__(
        self,
        caller: str,
        upstream: str,
        defaults: Mapping[str, float],
        *,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._caller = caller
        self._upstream = upstream
        self._defaults = both_keys(dict(defaults))
        self._margin = margin
        self._clock = clock

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        """The call's details with its timeout set.

        Raises:
            grpc.aio.AioRpcError: DEADLINE_EXCEEDED, the caller's budget is spent.

        """
        try:
            timeout = outgoing_timeout(
                explicit=details.timeout,
                default=self._defaults.get(details.method),
                deadline=CALLER_DEADLINE.get(),
                now=self._clock(),
                margin=self._margin,
            )
        except TooLittleTime as error:
            raise refusal(
                self._caller,
                self._upstream,
                "deadline",
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{method_name(details.method)} to {self._upstream}: {error}",
            ) from None
        if timeout == details.timeout:
            return details
        return grpc.aio.ClientCallDetails(
            details.method, timeout, details.metadata, details.credentials, details.wait_for_ready
        )


class UnaryDeadlineInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Sets the timeout of unary calls."""

    def __init__(self, budget: DeadlineBudget) -> None:
        self._budget = budget

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Send the call with its timeout, or refuse it."""
        return await continuation(self._budget.details(client_call_details), request)


class StreamDeadlineInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Sets the timeout of server-streaming calls."""

    def __init__(self, budget: DeadlineBudget) -> None:
        self._budget = budget

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Start the stream with its timeout, or refuse it."""
        return await continuation(self._budget.details(client_call_details), request)


def client_deadline_interceptors(budget: DeadlineBudget) -> list[Any]:
    """The interceptors that apply ``budget`` to unary and server-streaming calls."""
    return [UnaryDeadlineInterceptor(budget), StreamDeadlineInterceptor(budget)]
