"""The OpenAPI document describes the OAuth endpoints as the edge serves them (form bodies, RFC shapes)."""

from __future__ import annotations

import functools
from typing import Any

from openapi_spec_validator import validate

from gateway_rest.descriptors import Catalog
from gateway_rest.mesh_upstreams import vocelio_openapi
from mesh import registry

SCHEMAS = "#/components/schemas/"
FORM = "application/x-www-form-urlencoded"


@functools.cache
def _document() -> dict[str, Any]:
    return vocelio_openapi(Catalog.from_file(registry.default_descriptor_set()))


def test_the_document_with_the_oauth_operations_is_valid_openapi():
    validate(_document())


def test_the_token_operation_takes_a_form_and_answers_rfc_6749_shapes():
    document = _document()
    token = document["paths"]["/v1/auth/token"]["post"]
    assert token["operationId"] == "IdentityService_IssueToken"
    assert token["security"] == []
    assert token["x-vocelio-rate-limit-class"] == "RATE_LIMIT_CLASS_AUTH"
    content = token["requestBody"]["content"]
    assert content[FORM]["schema"] == {"$ref": SCHEMAS + "OAuthTokenRequest"}
    assert "application/json" in content
    success = token["responses"]["200"]
    assert success["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "OAuthTokenResponse"}
    assert "Cache-Control" in success["headers"]
    for code in ("400", "401", "429", "503"):
        answer = token["responses"][code]
        assert answer["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "OAuthError"}
        assert "Cache-Control" in answer["headers"] and "Pragma" in answer["headers"]
    assert "WWW-Authenticate" in token["responses"]["401"]["headers"]
    assert "Retry-After" in token["responses"]["429"]["headers"]
    schemas = document["components"]["schemas"]
    assert set(schemas["OAuthTokenResponse"]["required"]) == {"access_token", "token_type", "expires_in"}
    assert schemas["OAuthError"]["required"] == ["error"]
    assert {"grant_type", "username", "password", "refresh_token", "client_id", "client_secret", "scope"} <= set(
        schemas["OAuthTokenRequest"]["properties"]
    )


def test_the_revocation_operation_takes_a_form_and_answers_an_empty_200():
    revoke = _document()["paths"]["/v1/auth/revoke"]["post"]
    assert revoke["requestBody"]["content"][FORM]["schema"] == {"$ref": SCHEMAS + "OAuthRevocationRequest"}
    assert "content" not in revoke["responses"]["200"]
    assert revoke["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "OAuthError"}


def test_the_jwks_documents_its_cache_headers_and_an_oauth2_scheme_names_the_token_url():
    document = _document()
    jwks = document["paths"]["/.well-known/jwks.json"]["get"]
    assert {"Cache-Control", "ETag"} <= set(jwks["responses"]["200"]["headers"])
    assert "304" in jwks["responses"]
    flows = document["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["password"]["tokenUrl"] == flows["clientCredentials"]["tokenUrl"] == "/v1/auth/token"
    # The global requirement is unchanged: a bearer token or an API key.
    assert document["security"] == [{"bearerAuth": []}, {"apiKey": []}]
