"""The edge as the Vocelio mesh runs it: upstreams from the registry, options from the settings."""

from __future__ import annotations

import functools
from typing import Any

from starlette.applications import Starlette

from gateway_rest.app import create_app
from gateway_rest.descriptors import Catalog
from gateway_rest.docs import docs_routes, openapi_route
from gateway_rest.oauth import OAuthEndpoints, OAuthOptions
from gateway_rest.oauth_openapi import describe_oauth
from gateway_rest.openapi import build_openapi
from gateway_rest.transcoder import EdgeOptions
from gateway_rest.upstreams import Upstream, Upstreams
from gateway_rest.vocelio_policy import vocelio_is_public, vocelio_operation_extras
from mesh.config import Settings
from mesh.registry import Registry, default_descriptor_set
from services.developer_api.credentials import looks_like_secret


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
    )


def mesh_app(registry: Registry, settings: Settings, ports: dict[str, int] | None = None) -> Starlette:
    """The REST edge in front of the whole mesh, with the Vocelio OpenAPI document and docs."""
    catalog = Catalog.from_file(default_descriptor_set())
    document = functools.partial(vocelio_openapi, catalog)
    upstreams = mesh_upstreams(registry, settings, ports)
    options = edge_options(settings)
    return create_app(
        upstreams,
        catalog,
        options=options,
        cors_origins=settings.edge_cors_origins,
        extra_routes=[openapi_route(document), *docs_routes(), *oauth_endpoints(upstreams, options, settings).routes()],
        health_timeout=settings.health_probe_timeout,
    )


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


API_DESCRIPTION = (
    "The public REST/JSON API of Vocelio, the backend for AI call centers: agents, phone numbers, campaigns, "
    "calls, compliance, billing, analytics, webhooks and the rest. Every operation is a gRPC method of the "
    "same contract, transcoded by the edge. Authenticate with `Authorization: Bearer <token>` (from the OAuth 2.0 "
    "token endpoint, `POST /v1/auth/token`) or `X-Api-Key: <key>`. Errors are `google.rpc.Status` JSON with the "
    "canonical HTTP status, except at the OAuth endpoints, which answer RFC 6749 error objects."
)
