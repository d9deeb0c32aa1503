"""Hostile tokens (RFC 8725's categories), on gRPC directly and through the real REST edge.

Every case must be refused with UNAUTHENTICATED / 401 and one generic message, and the
handler must never run. The service under attack is a real agents server whose
GetAgent is replaced by a spy that counts calls.
"""

from __future__ import annotations

import base64
import json
import time
import types
import uuid

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import runtime.server
from mesh.config import Settings
from mesh.revocations import SESSION, TOKEN
from tests.support.mesh import running_services
from tests.support.tokens import AUDIENCE, ISSUER, TestIssuer, thumbprint
from vocelio.agents.v1 import agents_service_pb2 as pb
from vocelio.agents.v1 import agents_service_pb2_grpc as pb_grpc

TRUSTED = TestIssuer()
ATTACKER = TestIssuer()
GET_AGENT = "/vocelio.agents.v1.AgentsService/GetAgent"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(**overrides):
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "users/u_mallory",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j-" + str(now),
        "sid": "s-1",
        "org": "org_a",
        "role": "VIEWER",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _unsigned(header, claims, signature=""):
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{signature}"


def _public_pem(issuer: TestIssuer) -> bytes:
    return issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tamper_payload(token: str, **changes) -> str:
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    return f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"


def _tamper_header(token: str, **changes) -> str:
    head, body, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header.update(changes)
    return f"{_b64(json.dumps(header).encode())}.{body}.{signature}"


def _sign(claims, key, algorithm="ES256", **header):
    return jwt.encode(claims, key, algorithm=algorithm, headers={"typ": "at+jwt", "kid": TRUSTED.kid, **header})


def _signed_as_sent(head: str, body: str, key=None) -> str:
    """A token signed over exactly these segments (PyJWT would re-encode them canonically)."""
    signing_input = f"{head}.{body}".encode()
    r, s = decode_dss_signature((key or TRUSTED.private_key).sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode()}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _signed_json(header_text: str, claims_text: str) -> str:
    """A validly signed token whose header and claims are this JSON text, byte for byte."""
    return _signed_as_sent(_b64(header_text.encode()), _b64(claims_text.encode()))


def _header_text(**extra) -> str:
    return json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": TRUSTED.kid, **extra})


def _claims_text(**extra) -> str:
    return json.dumps(_claims(**extra))


def _with_member(text: str, member: str) -> str:
    """JSON object text with one more member written in (a duplicate name, a deep value)."""
    return text[:-1] + ", " + member + "}"


def _padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _padded_cases() -> dict[str, str]:
    # A token whose header and payload both need padding and whose signature has "-" or "_".
    for extra in range(64):
        good = TRUSTED.mint(role="VIEWER", jti=uuid.uuid4().hex + "j" * (extra % 4))
        head, body, signature = good.split(".")
        if len(head) % 4 and len(body) % 4 and ("-" in signature or "_" in signature):
            break
    else:
        raise AssertionError("no token of the shape needed")
    return {
        # RFC 7515 §2: base64url *without* padding; PyJWT tolerates "=".
        "signature with = padding": f"{head}.{body}.{signature}==",
        "header padded, signed as sent": _signed_as_sent(_padded(head), body),
        "payload padded, signed as sent": _signed_as_sent(head, _padded(body)),
        "signature in standard base64 (+ and /)": f"{head}.{body}.{signature.replace('-', '+').replace('_', '/')}",
        "stray characters in the signature": f"{head}.{body}.{signature[:10]}**{signature[10:]}",
        "header with a space": f"{head[:4]} {head[4:]}.{body}.{signature}",
    }


def _strict_json_cases() -> dict[str, str]:
    header, claims = _header_text(), _claims_text()
    later = int(time.time()) + 600
    return {
        # duplicate member names (RFC 7515 §5.2, RFC 8725 §2.6): PyJWT's json.loads keeps the last
        "alg twice in the header": _signed_json(_with_member(_header_text(alg="none"), '"alg": "ES256"'), claims),
        "kid twice in the header": _signed_json(
            _with_member(_header_text(kid="no-such-key"), f'"kid": "{TRUSTED.kid}"'), claims
        ),
        "typ twice in the header": _signed_json(_with_member(_header_text(typ="JWT"), '"typ": "at+jwt"'), claims),
        "sub twice in the claims": _signed_json(header, _with_member(claims, '"sub": "users/u_other"')),
        "exp twice in the claims": _signed_json(
            header, _with_member(_claims_text(exp=int(time.time()) - 3600), f'"exp": {later}')
        ),
        "role twice, spelled with an escape": _signed_json(header, _with_member(claims, '"r\\u006fle": "SUPER_ADMIN"')),
        # depth and size caps: ~2,500 levels deep gave a RecursionError (HTTP 500) once
        "header nested 2,500 deep": _signed_json(_with_member(header, f'"x": {_nested(2500)}'), claims),
        "header nested 10 deep": _signed_json(_with_member(header, f'"x": {_nested(10)}'), claims),
        "claims nested 2,500 deep": _signed_json(header, _with_member(claims, f'"x": {_nested(2500)}')),
        "claims nested 10 deep": _signed_json(header, _with_member(claims, f'"x": {_nested(10)}')),
        "header over the size cap": _signed_json(_with_member(header, f'"pad": "{"x" * 2000}"'), claims),
        # encodings PyJWT's json.loads would take
        "header in UTF-16": _signed_as_sent(_b64(header.encode("utf-16")), _b64(claims.encode())),
        "claims with NaN": _signed_json(header, _with_member(claims, '"nbf2": NaN')),
        # lifetime and token id
        "iat now, exp in ten years": TRUSTED.mint(role="VIEWER", lifetime=10 * 365 * 24 * 3600),
        "lifetime just over the cap and leeway": TRUSTED.mint(role="VIEWER", lifetime=900 + 30 + 5),
        "jti empty": TRUSTED.mint(role="VIEWER", jti=""),
        "jti not a string": TRUSTED.mint(role="VIEWER", jti=7),
        "jti over the length cap": TRUSTED.mint(role="VIEWER", jti="j" * 129),
        "exp true (a boolean)": _sign(_claims(exp=True), TRUSTED.private_key),
    }


def _attacker_jwk() -> dict[str, str]:
    return {k: v for k, v in ATTACKER.public_jwk.items() if k in ("kty", "crv", "x", "y")}


def _hostile_cases() -> dict[str, str]:
    good = TRUSTED.mint(role="VIEWER")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_ec = ec.generate_private_key(ec.SECP384R1())
    return {
        # alg: none and friends
        "alg none": _unsigned({"alg": "none", "typ": "at+jwt", "kid": TRUSTED.kid}, _claims()),
        "alg None capitalised": _unsigned({"alg": "None", "typ": "at+jwt", "kid": TRUSTED.kid}, _claims()),
        "alg none with a signature kept": _unsigned(
            {"alg": "none", "typ": "at+jwt", "kid": TRUSTED.kid}, _claims(), good.split(".")[2]
        ),
        # algorithm confusion
        "HS256 keyed with the public key": _unsigned(
            {"alg": "HS256", "typ": "at+jwt", "kid": TRUSTED.kid}, _claims(), _b64(b"x" * 32)
        ),
        "HS256 with a guessed secret": jwt.encode(
            _claims(),
            "s3cret-guessed-by-the-attacker-32b",
            algorithm="HS256",
            headers={"typ": "at+jwt", "kid": TRUSTED.kid},
        ),
        "RS256 with an unknown RSA key": _sign(_claims(), rsa_key, "RS256"),
        "ES384 not on the allow-list": _sign(_claims(), other_ec, "ES384"),
        "EdDSA header on an ES256 key": _tamper_header(good, alg="EdDSA"),
        # forged or tampered
        "signed by another key with the trusted kid": _sign(_claims(), ATTACKER.private_key),
        "payload tampered to SUPER_ADMIN": _tamper_payload(good, role="SUPER_ADMIN"),
        "payload tampered to another org": _tamper_payload(good, org="org_b"),
        "header kid swapped": _tamper_header(good, kid=ATTACKER.kid),
        "signature stripped": ".".join(good.split(".")[:2]) + ".",
        "signature truncated": good[:-10],
        "two segments only": ".".join(good.split(".")[:2]),
        # time claims
        "expired long ago": TRUSTED.mint(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200, lifetime=-3600),
        "nbf in the future": TRUSTED.mint(nbf=int(time.time()) + 3600),
        "iat in the future": TRUSTED.mint(iat=int(time.time()) + 3600),
        "exp as a string": _sign(_claims(exp=str(int(time.time()) + 600)), TRUSTED.private_key),
        "exp missing": _sign(_claims(exp=None), TRUSTED.private_key),
        "iat missing": _sign(_claims(iat=None), TRUSTED.private_key),
        "jti missing": _sign(_claims(jti=None), TRUSTED.private_key),
        # issuer and audience
        "wrong issuer": TRUSTED.mint(iss="https://evil.example"),
        "wrong audience": TRUSTED.mint(aud="another-api"),
        "audience missing": _sign(_claims(aud=None), TRUSTED.private_key),
        # token-type confusion
        "typ JWT (an ID token)": _sign(_claims(), TRUSTED.private_key, typ="JWT"),
        "typ missing": jwt.encode(_claims(), TRUSTED.private_key, algorithm="ES256", headers={"kid": TRUSTED.kid}),
        "refresh-looking opaque token": "rt_" + "A" * 43,
        # crit
        "crit names an extension": _sign(_claims(), TRUSTED.private_key, crit=["exp"]),
        # kid injection
        "kid unknown": _sign(_claims(), TRUSTED.private_key, kid="no-such-key"),
        "kid path traversal": _sign(_claims(), TRUSTED.private_key, kid="../../../../etc/passwd"),
        "kid SQL injection": _sign(_claims(), TRUSTED.private_key, kid="' OR '1'='1"),
        "kid not a string": _tamper_header(good, kid=7),
        # key-carrying headers: never fetched, never trusted
        "jku to an attacker URL": _sign(_claims(), ATTACKER.private_key, jku="http://127.0.0.1:9/jwks.json"),
        "x5u to an attacker URL": _sign(_claims(), ATTACKER.private_key, x5u="http://127.0.0.1:9/cert.pem"),
        "embedded jwk of the attacker": _sign(
            _claims(), ATTACKER.private_key, jwk=_attacker_jwk(), kid=thumbprint(_attacker_jwk())
        ),
        "x5c chain": _sign(_claims(), TRUSTED.private_key, x5c=["MIIB"]),
        # subjects and roles
        "unknown subject kind": TRUSTED.mint(subject="robots/r1"),
        "unknown role": TRUSTED.mint(role="GOD"),
        "user token without an organisation": TRUSTED.mint(role="ADMIN", org=""),
        "service subject claiming ADMIN": TRUSTED.mint(subject="services/agents", role="ADMIN", org=""),
        "empty subject": TRUSTED.mint(subject=""),
        "API key named in another organisation": TRUSTED.mint(
            subject="organizations/org_b/api_keys/k_1", role="", org="org_a", scope="agents.get"
        ),
        "API key in the unscoped form": TRUSTED.mint(subject="api_keys/k_1", role="", org="org_a", scope="agents.get"),
        "API key without scopes": TRUSTED.mint(subject="organizations/org_a/api_keys/k_1", role="", org="org_a"),
        # malformed encodings
        "oversize": TRUSTED.mint(padding="x" * 9000),
        "header not base64": "!!!." + good.split(".", 1)[1],
        "header a JSON array": _b64(b"[1,2]") + "." + good.split(".", 1)[1],
        "garbage": "not-a-token-at-all",
        "unicode garbage": "тест.тест.тест",
        **_padded_cases(),
        **_strict_json_cases(),
    }


HOSTILE = _hostile_cases()


def test_there_are_at_least_thirty_cases():
    assert len(HOSTILE) >= 30


@pytest.fixture(scope="module")
def spy():
    return types.SimpleNamespace(calls=0)


@pytest.fixture
async def target(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch, spy):
    class SpyAgents(pb_grpc.AgentsServiceServicer):
        async def GetAgent(self, request, context):
            spy.calls += 1
            return pb.GetAgentResponse(agent={"name": request.name})

    def load(spec):
        if spec.name != "agents":
            return None
        return types.SimpleNamespace(
            register=lambda server, _ctx: pb_grpc.add_AgentsServiceServicer_to_server(SpyAgents(), server)
        )

    monkeypatch.setattr(runtime.server, "load_service_module", load)
    async with running_services(sqlite_settings, ["agents"], issuer=TRUSTED, edge=True) as mesh:
        host = mesh.hosts[0]
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge_port}") as http,
        ):
            yield types.SimpleNamespace(host=host, stub=pb_grpc.AgentsServiceStub(channel), http=http)


async def _grpc_refused(target, token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await target.stub.GetAgent(
            pb.GetAgentRequest(name="organizations/o1/agents/a1"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() in ("invalid or missing credentials", "authentication required")


async def _edge_refused(target, token: str) -> None:
    header = f"Bearer {token}".encode()  # bytes: raw UTF-8 reaches the edge as a client could send it
    response = await target.http.get("/v1/organizations/o1/agents/a1", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["code"] == 16
    assert body["message"] in ("invalid or missing credentials", "authentication required")
    assert token[:20] not in response.text


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_token_is_refused_and_the_handler_never_runs(case, target, spy):
    before = spy.calls
    if HOSTILE[case].isascii():  # a gRPC client cannot even send non-ASCII metadata
        await _grpc_refused(target, HOSTILE[case])
    await _edge_refused(target, HOSTILE[case])
    assert spy.calls == before


async def test_the_control_token_is_accepted(target, spy):
    before = spy.calls
    token = TRUSTED.mint(role="VIEWER")
    reply = await target.stub.GetAgent(
        pb.GetAgentRequest(name="organizations/o1/agents/a1"),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=5,
    )
    assert reply.agent.name == "organizations/o1/agents/a1"
    response = await target.http.get("/v1/organizations/o1/agents/a1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert spy.calls == before + 2


async def test_an_api_key_token_named_under_its_organisation_is_accepted(target, spy):
    before = spy.calls
    token = TRUSTED.mint(subject="organizations/org_a/api_keys/k_1", role="", org="org_a", scope="agents.get")
    reply = await target.stub.GetAgent(
        pb.GetAgentRequest(name="x"), metadata=(("authorization", f"Bearer {token}"),), timeout=5
    )
    assert reply.agent.name == "x"
    assert spy.calls == before + 1


async def test_revoked_token_and_session_are_refused(target, spy):
    by_token = TRUSTED.mint(role="VIEWER", jti="revoked-jti")
    by_session = TRUSTED.mint(role="VIEWER", sid="revoked-session")
    # Each is accepted first (and cached), then revoked: the cache must not keep it alive.
    for token in (by_token, by_session):
        await target.stub.GetAgent(
            pb.GetAgentRequest(name="organizations/o1/agents/a1"), metadata=(("authorization", f"Bearer {token}"),)
        )
    target.host.revocations.add(TOKEN, token_id="revoked-jti", expires_at=time.time() + 900)
    target.host.revocations.add(SESSION, session="revoked-session")
    before = spy.calls
    for token in (by_token, by_session):
        await _grpc_refused(target, token)
        await _edge_refused(target, token)
    assert spy.calls == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}, {"Authorization": "Token abc"}],
    ids=["none", "basic", "empty-bearer", "other-scheme"],
)
async def test_missing_or_foreign_credentials(headers, target, spy):
    before = spy.calls
    response = await target.http.get("/v1/organizations/o1/agents/a1", headers=headers)
    assert response.status_code == 401
    assert response.json()["message"] == "authentication required"
    assert spy.calls == before


# Exactly one credential per request: each entry below is a valid token (or key-shaped
# value), so any of them alone would be let through; together, or smuggled as
# Grpc-Metadata-*, the request is refused.
EDGE_CREDENTIAL_CASES = {
    "two Authorization headers": lambda a, b: [("Authorization", f"Bearer {a}"), ("Authorization", f"Bearer {b}")],
    "the same Authorization header twice": lambda a, b: [("Authorization", f"Bearer {a}")] * 2,
    "Grpc-Metadata-Authorization alone": lambda a, b: [("Grpc-Metadata-Authorization", f"Bearer {a}")],
    "Grpc-Metadata-Authorization beside Authorization": lambda a, b: [
        ("Authorization", f"Bearer {a}"),
        ("Grpc-Metadata-Authorization", f"Bearer {b}"),
    ],
    "Grpc-Metadata-X-Api-Key alone": lambda a, b: [("Grpc-Metadata-X-Api-Key", "vk_" + "a" * 40)],
    "Grpc-Metadata-X-Api-Key beside Authorization": lambda a, b: [
        ("Authorization", f"Bearer {a}"),
        ("Grpc-Metadata-X-Api-Key", "vk_" + "a" * 40),
    ],
    "Grpc-Metadata-Authorization-Bin": lambda a, b: [
        ("Authorization", f"Bearer {a}"),
        ("Grpc-Metadata-Authorization-Bin", base64.b64encode(f"Bearer {b}".encode()).decode()),
    ],
    "Authorization and X-Api-Key": lambda a, b: [("Authorization", f"Bearer {a}"), ("X-Api-Key", "vk_" + "a" * 40)],
    "two X-Api-Key headers": lambda a, b: [("X-Api-Key", "vk_" + "a" * 40), ("X-Api-Key", "vk_" + "b" * 40)],
}

GRPC_CREDENTIAL_CASES = {
    "two authorization entries": lambda a, b: (("authorization", f"Bearer {a}"), ("authorization", f"Bearer {b}")),
    "the same authorization entry twice": lambda a, b: (("authorization", f"Bearer {a}"),) * 2,
    "authorization and x-api-key": lambda a, b: (("authorization", f"Bearer {a}"), ("x-api-key", "vk_" + "a" * 40)),
    "x-api-key and authorization": lambda a, b: (("x-api-key", "vk_" + "a" * 40), ("authorization", f"Bearer {a}")),
    "two x-api-key entries": lambda a, b: (("x-api-key", "vk_" + "a" * 40), ("x-api-key", "vk_" + "b" * 40)),
}


@pytest.mark.parametrize("case", sorted(EDGE_CREDENTIAL_CASES))
async def test_more_than_one_credential_or_a_smuggled_one_is_refused_at_the_edge(case, target, spy):
    before = spy.calls
    first, second = TRUSTED.mint(role="VIEWER"), TRUSTED.mint(role="ADMIN")
    headers = EDGE_CREDENTIAL_CASES[case](first, second)
    response = await target.http.get("/v1/organizations/o1/agents/a1", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == 16
    assert response.json()["message"] == "invalid or missing credentials"
    assert first[:20] not in response.text and second[:20] not in response.text
    assert spy.calls == before


@pytest.mark.parametrize("case", sorted(GRPC_CREDENTIAL_CASES))
async def test_more_than_one_credential_is_refused_by_the_service(case, target, spy):
    before = spy.calls
    metadata = GRPC_CREDENTIAL_CASES[case](TRUSTED.mint(role="VIEWER"), TRUSTED.mint(role="ADMIN"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await target.stub.GetAgent(pb.GetAgentRequest(name="organizations/o1/agents/a1"), metadata=metadata, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "invalid or missing credentials"
    assert spy.calls == before


async def test_a_token_at_the_longest_lifetime_is_accepted(target, spy):
    # The positive control of the lifetime cap: identity's own lifetime plus the leeway passes.
    before = spy.calls
    token = TRUSTED.mint(role="VIEWER", lifetime=900 + 30)
    reply = await target.stub.GetAgent(
        pb.GetAgentRequest(name="organizations/o1/agents/a1"),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=5,
    )
    assert reply.agent.name == "organizations/o1/agents/a1"
    response = await target.http.get("/v1/organizations/o1/agents/a1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert spy.calls == before + 2


async def test_brackets_inside_strings_and_json_at_the_depth_cap_are_accepted(target, spy):
    # The depth pre-scan skips strings (escaped quotes included); eight levels, the claims object first, pass.
    before = spy.calls
    tokens = [
        TRUSTED.mint(role="VIEWER", note='[[[[[[[[[[ \\" {{{{{{{{{{ \\\\" [[[['),
        TRUSTED.mint(role="VIEWER", nested=[[[[[[{}]]]]]]),
    ]
    for token in tokens:
        reply = await target.stub.GetAgent(
            pb.GetAgentRequest(name="organizations/o1/agents/a1"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )
        assert reply.agent.name == "organizations/o1/agents/a1"
    assert spy.calls == before + len(tokens)
