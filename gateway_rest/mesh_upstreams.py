"""The edge as the Vocelio mesh runs it: upstreams from the registry, options from the settings.

In front of the mesh the edge is ``services/edge``: it obtains its own token from identity
(a token with no permissions) and sends it with every call in
``x-vocelio-proxy-authorization``, vouching for the client address it forwards. The
operational pages need a platform principal's token, verified with identity's JWKS.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format
from starlette.applications import Starlette

from gateway_rest.app import create_app
from gateway_rest.descriptors import Catalog
from gateway_rest.docs import docs_routes, openapi_route
from gateway_rest.metrics import EdgeMetrics
from gateway_rest.metrics_gather import ScrapeTarget
from gateway_rest.oauth import OAuthEndpoints, OAuthOptions
from gateway_rest.oauth_openapi import describe_oauth
from gateway_rest.openapi import build_openapi
from gateway_rest.ops_access import platform_guard
from gateway_rest.transcoder import EdgeOptions
from gateway_rest.upstreams import Upstream, Upstreams
from gateway_rest.vocelio_policy import vocelio_is_public, vocelio_operation_extras
from mesh.config import Settings
from mesh.jwks import JwksCache
from mesh.registry import Registry, default_descriptor_set
from mesh.service_credentials import EDGE
from mesh.tokens import TokenVerifier
from services.developer_api.credentials import looks_like_secret

log = logging.getLogger(__name__)


def mesh_upstreams(registry: Registry, settings: Settings, ports: dict[str, int] | None = None) -> Upstreams:
    """One upstream per mesh service at its configured address.

    Args:
        registry: the services.
        settings: host and port offset.
        ports: actual ports by service name, where they differ from the configured ones
            (an in-process mesh on ephemeral ports).

    """
    ports = ports or {}
    return Upstreams(
        [
            Upstream(
                name=spec.name,
                title=spec.title,
                address=f"{settings.host}:{ports.get(spec.name, settings.port_for(spec.contract_port))}",
                services=(spec.full_name,),
            )
            for spec in registry
        ]
    )


def edge_options(settings: Settings) -> EdgeOptions:
    """The edge's request handling options from the process settings."""
    return EdgeOptions(
        max_body_bytes=settings.edge_max_body_bytes,
        default_timeout=settings.edge_timeout,
        strict=settings.edge_strict,
        trusted_proxies=settings.edge_trusted_proxies,
    )


def _identity(upstreams: Upstreams, registry: Registry) -> Upstream:
    upstream = upstreams.for_service(registry.service("identity").full_name)
    assert upstream is not None
    return upstream


def _edge_verifier(upstream: Upstream, settings: Settings) -> TokenVerifier:
    async def fetch() -> dict[str, Any]:
        from vocelio.identity.v1 import identity_service_pb2 as pb
        from vocelio.identity.v1 import identity_service_pb2_grpc as pb_grpc

        stub = pb_grpc.IdentityServiceStub(upstream.channel)  # type: ignore[no-untyped-call]
        reply = await stub.GetJwks(pb.GetJwksRequest(), timeout=5)
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    return TokenVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience, keys=JwksCache(fetch))


def mesh_app(
    registry: Registry, settings: Settings, ports: dict[str, int] | None = None, *, scrape_services: bool = True
) -> Starlette:
    """The REST edge in front of the whole mesh, with the Vocelio OpenAPI document and docs.

    Its ``/metrics`` merges every service's metrics port; with ``scrape_services`` off (the
    services run in this process and count on its registry) it shows that registry instead.
    """
    catalog = Catalog.from_file(default_descriptor_set())
    document = functools.partial(vocelio_openapi, catalog)
    from runtime.clients import ServiceCredential  # the edge is a mesh client for its own token only

    upstreams = mesh_upstreams(registry, settings, ports)
    identity = _identity(upstreams, registry)
    # IssueToken and GetJwks are public: the identity upstream's plain channel carries them.
    credential = ServiceCredential(EDGE, settings, lambda: identity.channel)
    options = dataclasses.replace(edge_options(settings), proxy_token=_EdgeToken(credential.token))
    return create_app(
        upstreams,
        catalog,
        options=options,
        cors_origins=settings.edge_cors_origins,
        extra_routes=[openapi_route(document), *docs_routes(), *oauth_endpoints(upstreams, options, settings).routes()],
        health_timeout=settings.health_probe_timeout,
        ops_guard=platform_guard(_edge_verifier(identity, settings)),
        metrics=EdgeMetrics(
            multiprocess_dir=settings.prometheus_multiproc_dir,
            known_methods=frozenset(binding.http_method for binding in catalog.bindings),
        ),
        metrics_targets=metrics_targets(registry, settings, ports) if scrape_services else (),
        scrape_timeout=settings.metrics_scrape_timeout,
    )


def metrics_targets(registry: Registry, settings: Settings, ports: dict[str, int] | None = None) -> list[ScrapeTarget]:
    """Every service's metrics port (none when metrics are off)."""
    ports = ports or {}
    targets = []
    for spec in registry:
        metrics_port = settings.metrics_port_for(ports.get(spec.name, settings.port_for(spec.contract_port)))
        if metrics_port:
            targets.append(ScrapeTarget(spec.name, settings.host, metrics_port))
    return targets


def vocelio_openapi(catalog: Catalog) -> dict[str, Any]:
    """The OpenAPI document of the Vocelio edge, the OAuth endpoints described as they are served."""
    document = build_openapi(
        catalog,
        title="Vocelio API",
        version="v1",
        description=API_DESCRIPTION,
        is_public=vocelio_is_public,
        operation_extras=vocelio_operation_extras,
    )
    return describe_oauth(document)


def oauth_endpoints(upstreams: Upstreams, options: EdgeOptions, settings: Settings) -> OAuthEndpoints:
    """The OAuth token and revocation endpoints and the cacheable JWKS, in front of identity."""
    return OAuthEndpoints(
        upstreams,
        options,
        OAuthOptions(
            # Well inside the time a retired key stays published (access lifetime + leeway).
            jwks_max_age=min(300, settings.access_token_ttl // 2),
            unrevocable=looks_like_secret,
        ),
    )


class _EdgeToken:
    """The edge's own token, or ``""`` while identity cannot issue one (retried after a pause)."""

    def __init__(self, fetch: Callable[[], Awaitable[str]], pause: float = 5.0) -> None:
        self._fetch = fetch
        self._pause = pause
        self._retry_at = 0.0

    async def __call__(self) -> str:
        if time.monotonic() < self._retry_at:
            return ""
        try:
            return await self._fetch()
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            self._retry_at = time.monotonic() + self._pause
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "DEADLINE_EXCEEDED"
            log.warning("the edge could not get its service token (%s); client addresses go unvouched", code)
            return ""


API_DESCRIPTION = (
    "The public REST/JSON API of Vocelio, the backend for AI call centers: agents, phone numbers, campaigns, "
    "calls, compliance, billing, analytics, webhooks and the rest. Every operation is a gRPC method of the "
    "same contract, transcoded by the edge. Authenticate with `Authorization: Bearer <token>` (from the OAuth 2.0 "
    "token endpoint, `POST /v1/auth/token`) or `X-Api-Key: <key>`. Errors are `google.rpc.Status` JSON with the "
    "canonical HTTP status, except at the OAuth endpoints, which answer RFC 6749 error objects."
)
