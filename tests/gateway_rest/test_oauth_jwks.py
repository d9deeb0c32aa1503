"""The JWK Set: RFC 8037 OKP keys without ``y``, RFC 7518 EC keys with it, served cacheable by the edge."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway_rest import responses
from mesh.config import Settings
from mesh.jwks import parse_jwks
from services.identity import convert, signing
from tests.support.mesh import running_services
from vocelio.identity.v1 import identity_service_pb2 as pb


def _published(key: signing.PrivateKey) -> dict[str, str]:
    material = signing.material(key)
    return dict(material.jwk)


def test_an_ed25519_key_has_no_y_member_and_an_ec_key_has_one():
    okp = convert.jwk(_published(ed25519.Ed25519PrivateKey.generate()))
    assert not okp.HasField("y")
    ec_key = convert.jwk(_published(ec.generate_private_key(ec.SECP256R1())))
    assert ec_key.HasField("y") and ec_key.y
    document = json.loads(responses.render_json(pb.GetJwksResponse(keys=[okp, ec_key])))
    published_okp, published_ec = document["keys"]
    assert set(published_okp) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert (published_okp["kty"], published_okp["crv"], published_okp["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert set(published_ec) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (published_ec["kty"], published_ec["crv"], published_ec["alg"]) == ("EC", "P-256", "ES256")
    # The services' verifier (PyJWT's PyJWK) takes both.
    assert set(parse_jwks(document)) == {published_okp["kid"], published_ec["kid"]}


@pytest.fixture
def ed25519_settings(settings: Settings, tmp_path: pathlib.Path) -> Settings:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "signing.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return dataclasses.replace(settings, jwt_signing_key_file=pem, health_probe_interval=2.0)


async def test_the_edge_serves_the_jwks_per_rfc_8037_with_cache_headers(ed25519_settings: Settings):
    async with (
        running_services(ed25519_settings, ["identity"], edge=True) as mesh,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge_port}", timeout=15) as client,
    ):
        response = await client.get("/.well-known/jwks.json")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "public, max-age=300"
        etag = response.headers["etag"]
        ((key,),) = [response.json()["keys"]]
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
        assert "y" not in key and "d" not in key
        assert key["x"] and "=" not in key["x"]
        assert set(parse_jwks(response.json())) == {key["kid"]}

        unchanged = await client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        assert unchanged.headers["etag"] == etag
        assert unchanged.headers["cache-control"] == "public, max-age=300"
        stale = await client.get("/.well-known/jwks.json", headers={"If-None-Match": '"something-else"'})
        assert stale.status_code == 200 and stale.json() == response.json()
        wrong = await client.post("/.well-known/jwks.json")
        assert wrong.status_code == 405
        assert set(wrong.json()) == {"code", "message", "details"}
