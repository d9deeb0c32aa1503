"""The transcoding endpoint: HTTP/JSON request → gRPC call → HTTP/JSON response.

One generic engine driven by the descriptor set: route by the ``google.api.http``
bindings, build the request message, call the upstream over its shared channel with
the forwarded metadata and a deadline, and render the reply (JSON, raw ``HttpBody``,
or an NDJSON / SSE stream). Every failure is a ``google.rpc.Status`` JSON body with the
HTTP status of the canonical table; nothing upstream can turn into a 200 by accident,
and no stack trace leaves the edge.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.propagators.textmap import Setter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway_rest import responses
from gateway_rest.client_address import client_address
from gateway_rest.descriptors import Binding, Catalog
from gateway_rest.errors import EdgeError, http_status, retry_after_seconds, status_from_rpc_error, status_json
from gateway_rest.idempotency_key import HEADER as IDEMPOTENCY_KEY
from gateway_rest.idempotency_key import apply_idempotency_key
from gateway_rest.metadata import DEFAULT_FORWARDED, InvalidHeader, request_metadata, response_headers
from gateway_rest.metrics import UNMATCHED, EdgeMetrics
from gateway_rest.request_builder import RequestOptions, build_request
from gateway_rest.router import MethodNotAllowed, NoRoute, Router
from gateway_rest.upstreams import Upstream, Upstreams
from mesh import request_id as request_ids
from mesh.config import IPNetwork
from mesh.forwarding import FORWARDED_FOR, PROXY_AUTHORIZATION
from mesh.telemetry.tracing import active as tracing_active

log = logging.getLogger(__name__)

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclasses.dataclass(frozen=True, slots=True)
class EdgeOptions:
    """How the edge treats requests.

    Attributes:
        forwarded_headers: request headers passed upstream under their own names
            (besides ``Grpc-Metadata-*``), lower case.
        max_body_bytes: larger request bodies get 413.
        default_timeout: deadline of unary calls, seconds; a client may ask for less with
            ``Grpc-Timeout``.
        stream_timeout: deadline of server streams, seconds; ``None`` for none.
        strict: unknown JSON fields and query parameters are a 400 instead of ignored.
        retry_after: seconds in ``Retry-After`` when an upstream is unavailable.
        trusted_proxies: networks of the proxies whose ``X-Forwarded-For``/``Forwarded``
            name the client (see :mod:`gateway_rest.client_address`).
        proxy_token: the edge's own service token (``""`` while it cannot get one), sent as
            ``x-vocelio-proxy-authorization`` so services believe the ``x-forwarded-for`` it
            sets; ``None`` sends none.

    """

    forwarded_headers: frozenset[str] = frozenset(DEFAULT_FORWARDED)
    max_body_bytes: int = 4 * 1024 * 1024
    default_timeout: float = 30.0
    stream_timeout: float | None = None
    strict: bool = False
    retry_after: int = 1
    trusted_proxies: tuple[IPNetwork, ...] = ()
    proxy_token: Callable[[], Awaitable[str]] | None = None


class Transcoder:
    """An ASGI application answering every REST binding of a catalogue."""

    def __init__(self, catalog: Catalog, upstreams: Upstreams, options: EdgeOptions, metrics: EdgeMetrics) -> None:
        self.catalog = catalog
        self.upstreams = upstreams
        self.options = options
        self.metrics = metrics
        self.router = Router(catalog.bindings)
        self._request_options = RequestOptions(strict=options.strict)
        self._callables: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request."""
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        request = Request(scope, receive)
        request_id = request_ids.for_request(request.headers.get("x-request-id"))
        route, grpc_method = UNMATCHED, ""
        try:
            raw_path = scope.get("raw_path") or scope["path"].encode()
            path = raw_path.decode("latin-1").split("?", 1)[0]
            binding, variables = self.router.match(request.method, path)
            route, grpc_method = binding.template.source, binding.grpc_path
            # The edge's span is named by the binding's template, never the concrete path (bounded names).
            span = trace.get_current_span()
            span.update_name(f"{binding.http_method} {route}")
            span.set_attribute("http.route", route)
            response, code = await self._handle(request, binding, variables, request_id)
        except EdgeError as error:
            response, code = self._error(error.status(), error.http, error.headers), error.code.name
        except NoRoute:
            missing = EdgeError(grpc.StatusCode.NOT_FOUND, f"no route for {request.method} {scope['path']}")
            response, code = self._error(missing.status(), 404, {}), "NOT_FOUND"
        except MethodNotAllowed as not_allowed:
            allow = ", ".join(not_allowed.allowed)
            wrong = EdgeError(grpc.StatusCode.UNIMPLEMENTED, f"{request.method} is not allowed here; use {allow}")
            response, code = self._error(wrong.status(), 405, {"Allow": allow}), "UNIMPLEMENTED"
        except Exception:
            incident = uuid.uuid4().hex[:16]
            log.exception(
                "edge failure on %s %s (incident %s)",
                request.method,
                scope["path"],
                incident,
                extra={"request_id": request_id},
            )
            bug = EdgeError(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")
            response, code = self._error(bug.status(), 500, {}), "INTERNAL"
        response.headers["X-Request-Id"] = request_id
        await response(scope, receive, send)
        self.metrics.observe(
            request.method, route, grpc_method, response.status_code, time.perf_counter() - started, code
        )

    async def _handle(
        self, request: Request, binding: Binding, variables: dict[str, str], request_id: str
    ) -> tuple[Response, str]:
        if binding.client_streaming:
            raise EdgeError(grpc.StatusCode.UNIMPLEMENTED, f"{binding.grpc_path} is client-streaming; use gRPC")
        upstream = self.upstreams.for_service(binding.service_name)
        if upstream is None:
            raise EdgeError(grpc.StatusCode.UNIMPLEMENTED, f"no upstream serves {binding.service_name}")
        # Read even on GET: a body sent to a route without one is a 400, never silently dropped.
        body = await self._read_body(request)
        message = build_request(
            binding,
            variables,
            # The raw query string, as ``request.url.query`` would give it, without building a URL.
            request.scope.get("query_string", b"").decode(),
            body,
            request.headers.get("content-type", ""),
            self._request_options,
        )
        apply_idempotency_key(message, request.headers.get(IDEMPOTENCY_KEY))
        metadata = await upstream_metadata(request, self.options, request_id)
        timeout = self._timeout(request, binding)
        if binding.server_streaming:
            return await self._stream(request, binding, upstream, message, metadata, timeout)
        return await self._unary(binding, upstream, message, metadata, timeout)

    async def _unary(
        self, binding: Binding, upstream: Upstream, message: Any, metadata: list[Any], timeout: float | None
    ) -> tuple[Response, str]:
        call = self._callable(upstream, binding, streaming=False)(message, timeout=timeout, metadata=metadata)
        try:
            reply = await call
        except grpc.aio.AioRpcError as error:
            return self._rpc_error(error, binding), error.code().name
        headers = dict(
            response_headers([*(await call.initial_metadata() or ()), *(await call.trailing_metadata() or ())])
        )
        selected = responses.select_body(reply, binding.response_body)
        raw = responses.http_body(selected)
        if raw is not None:
            headers["Content-Type"] = raw[0]  # exactly as the service said, no charset added
            return Response(raw[1], headers=headers), "OK"
        return Response(responses.render_json(selected), media_type=responses.JSON, headers=headers), "OK"

    async def _stream(
        self,
        request: Request,
        binding: Binding,
        upstream: Upstream,
        message: Any,
        metadata: list[Any],
        timeout: float | None,
    ) -> tuple[Response, str]:
        call = self._callable(upstream, binding, streaming=True)(message, timeout=timeout, metadata=metadata)
        replies = call.__aiter__()
        try:
            first = await replies.__anext__()
        except StopAsyncIteration:
            first = None
        except grpc.aio.AioRpcError as error:
            return self._rpc_error(error, binding), error.code().name
        headers = dict(response_headers(await call.initial_metadata() or ()))
        if first is not None:
            selected = responses.select_body(first, binding.response_body)
            raw = responses.http_body(selected)
            if raw is not None:
                headers["Content-Type"] = raw[0]
                return StreamingResponse(_raw_chunks(raw[1], replies, binding), headers=headers), "OK"
        sse = "text/event-stream" in request.headers.get("accept", "")
        media = responses.SSE if sse else responses.NDJSON
        if sse:
            headers["Cache-Control"] = "no-store"
        return StreamingResponse(_framed(first, replies, binding, sse), media_type=media, headers=headers), "OK"

    def _callable(self, upstream: Upstream, binding: Binding, *, streaming: bool) -> Any:
        key = (upstream.name, binding.grpc_path)
        multicallable = self._callables.get(key)
        if multicallable is None:
            factory = upstream.channel.unary_stream if streaming else upstream.channel.unary_unary
            multicallable = factory(
                binding.grpc_path,
                request_serializer=binding.request_class.SerializeToString,
                response_deserializer=binding.response_class.FromString,
            )
            self._callables[key] = multicallable
        return multicallable

    async def _read_body(self, request: Request) -> bytes:
        return await read_body(request, self.options.max_body_bytes)

    def _timeout(self, request: Request, binding: Binding) -> float | None:
        default = self.options.stream_timeout if binding.server_streaming else self.options.default_timeout
        header = request.headers.get("grpc-timeout")
        if not header:
            return default
        value, unit = header[:-1], header[-1:]
        if not value.isdigit() or unit not in _TIMEOUT_UNITS or len(value) > 8:
            raise EdgeError(
                grpc.StatusCode.INVALID_ARGUMENT, f"Grpc-Timeout {header!r} is not a gRPC timeout (e.g. 500m, 10S)"
            )
        asked = int(value) * _TIMEOUT_UNITS[unit]
        return asked if default is None else min(asked, default)

    def _rpc_error(self, error: grpc.aio.AioRpcError, binding: Binding) -> Response:
        status = status_from_rpc_error(error)
        code = error.code()
        metadata: Any = [*(error.initial_metadata() or ()), *(error.trailing_metadata() or ())]
        headers = dict(response_headers(metadata))
        if code == grpc.StatusCode.UNAVAILABLE:
            # A shedding service says when to come back; a vanished one cannot.
            headers["Retry-After"] = str(retry_after_seconds(status) or self.options.retry_after)
            # The channel's own text names internal addresses; the client needs only this.
            log.warning("upstream of %s unavailable: %s", binding.grpc_path, error.details())
            status.message = f"{binding.service_name} is temporarily unavailable; retry later"
        if code == grpc.StatusCode.UNAUTHENTICATED:
            headers["WWW-Authenticate"] = "Bearer"
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (delay := retry_after_seconds(status)) is not None:
            headers["Retry-After"] = str(delay)  # a rate limit's google.rpc.RetryInfo, as HTTP says it
        return self._error(status, http_status(code), headers)

    @staticmethod
    def _error(status: status_pb2.Status, http: int, headers: dict[str, str]) -> Response:
        return Response(status_json(status), status_code=http, media_type=responses.JSON, headers=headers)


async def upstream_metadata(request: Request, options: EdgeOptions, request_id: str) -> list[tuple[str, str | bytes]]:
    """The gRPC metadata a request sends upstream: forwarded headers, request id, user agent, client address.

    Shared by every endpoint of the edge that calls a service (the transcoder and the OAuth
    endpoints), so they all pass on the same things.

    Raises:
        EdgeError: a forwarded header gRPC cannot carry (401 for a credential, else 400).

    """
    try:
        metadata = request_metadata(request.headers.items(), options.forwarded_headers)
    except InvalidHeader as error:
        if error.name in ("authorization", "x-api-key"):
            # A credential gRPC cannot even carry is no credential: 401, like any other bad one.
            raise EdgeError(
                grpc.StatusCode.UNAUTHENTICATED,
                "invalid or missing credentials",
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        raise EdgeError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
    # The edge's own choice (the client's when it was a sane one), never a Grpc-Metadata-X-Request-Id.
    metadata = [(k, v) for k, v in metadata if k != request_ids.METADATA_KEY]
    metadata.append((request_ids.METADATA_KEY, request_id))
    user_agent = request.headers.get("user-agent")
    if user_agent and user_agent.isascii():
        # gRPC replaces a client's own user-agent, so the browser's travels under its own name.
        metadata.append(("x-user-agent", user_agent[:256]))
    # What the client sends under these names (Grpc-Metadata-…) is never passed on: the edge sets them.
    metadata = [(k, v) for k, v in metadata if k not in (FORWARDED_FOR, PROXY_AUTHORIZATION)]
    metadata.extend(await _forwarding(request, options))
    if tracing_active():
        # The upstream call continues the edge's span (itself the child of the client's traceparent).
        metadata = [(k, v) for k, v in metadata if k not in _TRACE_CONTEXT]
        inject(metadata, setter=_APPEND)
    return metadata


_TRACE_CONTEXT = frozenset({"traceparent", "tracestate", "baggage"})


class _AppendSetter(Setter[list[tuple[str, str | bytes]]]):
    """Adds propagation headers to a metadata list."""

    def set(self, carrier: list[tuple[str, str | bytes]], key: str, value: str) -> None:
        carrier.append((key, value))


_APPEND = _AppendSetter()


async def _forwarding(request: Request, options: EdgeOptions) -> list[tuple[str, str | bytes]]:
    """The client address for the services, vouched for with the edge's own token."""
    if request.client is None:
        return []
    headers = request.headers
    address = client_address(
        request.client.host, headers.getlist("x-forwarded-for"), headers.getlist("forwarded"), options.trusted_proxies
    )
    entries: list[tuple[str, str | bytes]] = [(FORWARDED_FOR, address)]
    if options.proxy_token is not None:
        # Without it (identity unreachable) the services see the edge's own address: coarser, never looser.
        token = await options.proxy_token()
        if token:
            entries.append((PROXY_AUTHORIZATION, f"Bearer {token}"))
    return entries


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes.

    Raises:
        EdgeError: 413 past the limit (declared or streamed), 400 for a malformed Content-Length.

    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise EdgeError(grpc.StatusCode.INVALID_ARGUMENT, "Content-Length is not a number")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> EdgeError:
    return EdgeError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body is larger than {limit} bytes", http=413)


async def _framed(first: Any, replies: AsyncIterator[Any], binding: Binding, sse: bool) -> AsyncIterator[bytes]:
    frame = responses.sse_event if sse else responses.ndjson_line
    if first is None:
        return
    yield frame(responses.render_json(responses.select_body(first, binding.response_body)))
    try:
        async for reply in replies:
            yield frame(responses.render_json(responses.select_body(reply, binding.response_body)))
    except grpc.aio.AioRpcError as error:
        yield frame(status_json(status_from_rpc_error(error)), error=True)


async def _raw_chunks(first: bytes, replies: AsyncIterator[Any], binding: Binding) -> AsyncIterator[bytes]:
    yield first
    try:
        async for reply in replies:
            raw = responses.http_body(responses.select_body(reply, binding.response_body))
            if raw is not None:
                yield raw[1]
    except grpc.aio.AioRpcError as error:
        # Raw bytes have no framing to carry an error: the stream stops short and the log says why.
        log.warning("raw stream %s ended with %s: %s", binding.grpc_path, error.code().name, error.details())
