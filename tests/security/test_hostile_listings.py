"""Every List method of the implemented services answers bad filters and page tokens with 400 / INVALID_ARGUMENT.

A sweep over identity, agents, developer_api and team_hub, on gRPC directly and through
the real REST edge: a malformed filter, a filter naming no field, page tokens that are
garbage, forged (the right shape, another key), edited, or real but from another listing.
Never a 500, never a pass, on SQLite and PostgreSQL. (Each service's own tests also replay
a token with another filter or parent; this sweep makes sure no List method was left out.)
"""

from __future__ import annotations

import asyncio
import importlib
import re
import types
from typing import Any

import grpc
import httpx
import pytest

from mesh.config import Settings
from mesh.kit.paging import PageTokens, query_binding
from mesh.registry import MethodSpec, default_registry
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer, every_permission

ISSUER = TestIssuer()
SERVICES = ["identity", "agents", "developer_api", "team_hub"]
REGISTRY = default_registry()
ROOT = ISSUER.mint(subject="users/u_root", role="SUPER_ADMIN", org="", lifetime=900)
# Values for the fields a List request needs to name what it lists.
NAMES = {
    "parent": "organizations/org_a",
    "user": "users/u_ada",
}
PARENTS = {
    "ListAgentVersions": "organizations/org_a/agents/a1",
    "ListApiKeyUsage": "organizations/org_a/api_keys/k1",
}
MALFORMED_FILTERS = ["(((", 'state = "unterminated', "state = ", "AND AND", "x" * 5000]
UNKNOWN_FIELD_FILTERS = ['no_such_field = "x"', "secret_hash = x"]
BAD_TOKENS = ["not a token", "!!!!", "e30.e30", "A" * 8000, "\u00e9t\u00e9"]


def _list_methods() -> list[tuple[str, MethodSpec]]:
    return [
        (service, method)
        for service in SERVICES
        for method in REGISTRY.service(service).methods
        if method.name.startswith("List")
    ]


LIST_METHODS = _list_methods()


def _request_class(service: str, method: MethodSpec) -> Any:
    module = importlib.import_module(REGISTRY.service(service).pb2_module)
    return getattr(module, method.input_type.rsplit(".", 1)[1])


def _request(service: str, method: MethodSpec, **fields: Any) -> Any:
    cls = _request_class(service, method)
    present = cls.DESCRIPTOR.fields_by_name
    for name, value in NAMES.items():
        if name in present:
            fields.setdefault(name, PARENTS.get(method.name, value) if name == "parent" else value)
    return cls(**fields)


def _token_for(method: MethodSpec) -> str:
    assert method.policy is not None
    if method.policy.internal:
        # A mesh service allowed every internal listing (real services hold only their declared calls).
        return ISSUER.mint_service("identity", scope=every_permission(REGISTRY.by_full_name(method.path.split("/")[1])))
    return ROOT


def _http_target(method: MethodSpec, request: Any) -> tuple[str, str] | None:
    rule = method.http
    if rule is None or method.policy is None or method.policy.internal:
        return None
    pattern = rule.get
    if not pattern:
        return None

    def value(match: re.Match[str]) -> str:
        return str(getattr(request, match.group(1)))

    return "GET", re.sub(r"\{([a-z_]+)(?:=[^}]*)?\}", value, pattern)


@pytest.fixture
async def mesh(settings: Settings):
    async with running_services(settings, SERVICES, issuer=ISSUER, edge=True) as in_process:
        channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{in_process.ports[name]}") for name in SERVICES}
        try:
            await _until_serving(types.SimpleNamespace(channels=channels))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{in_process.edge_port}", timeout=30) as http:
                yield types.SimpleNamespace(channels=channels, http=http)
        finally:
            for channel in channels.values():
                await channel.close(None)


async def _grpc(mesh: Any, service: str, method: MethodSpec, request: Any) -> grpc.aio.AioRpcError | Any:
    call = mesh.channels[service].unary_unary(
        method.path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=lambda data: data,
    )
    try:
        return await call(request, metadata=(("authorization", f"Bearer {_token_for(method)}"),), timeout=10)
    except grpc.aio.AioRpcError as error:
        return error


async def _until_serving(mesh: Any, limit: float = 30.0) -> None:
    """Wait until every List method answers a plain request with anything but UNAVAILABLE (a bound, not a measurement).

    identity, for one, answers UNAVAILABLE until its database and signing keys are ready.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    for service, method in LIST_METHODS:
        while True:
            answer = await _grpc(mesh, service, method, _request(service, method))
            if not isinstance(answer, grpc.aio.AioRpcError) or answer.code() != grpc.StatusCode.UNAVAILABLE:
                break
            assert loop.time() < deadline, f"{method.path} still UNAVAILABLE: {answer.details()}"
            await asyncio.sleep(0.1)


async def _refused(mesh: Any, service: str, method: MethodSpec, what: str, **fields: Any) -> list[str]:
    """Send the request on gRPC and through the edge; describe every answer that is not INVALID_ARGUMENT."""
    problems = []
    request = _request(service, method, **fields)
    answer = await _grpc(mesh, service, method, request)
    code = answer.code() if isinstance(answer, grpc.aio.AioRpcError) else grpc.StatusCode.OK
    if code != grpc.StatusCode.INVALID_ARGUMENT:
        problems.append(f"{method.name} {what}: gRPC {code.name}")
    target = _http_target(method, request)
    if target is not None:
        params = {"pageToken": request.page_token} if request.page_token else {}
        if "filter" in request.DESCRIPTOR.fields_by_name and request.filter:
            params["filter"] = request.filter
        response = await mesh.http.request(
            target[0], target[1], params=params, headers={"Authorization": f"Bearer {_token_for(method)}"}
        )
        if response.status_code != 400 or response.json().get("code") != 3:
            problems.append(f"{method.name} {what}: HTTP {response.status_code} {response.text[:120]}")
    return problems


async def test_bad_filters_and_page_tokens_are_invalid_arguments_in_every_list_method(mesh):
    problems: list[str] = []
    forger = PageTokens.ephemeral()
    for service, method in LIST_METHODS:
        cls = _request_class(service, method)
        if "filter" in cls.DESCRIPTOR.fields_by_name:
            for text in MALFORMED_FILTERS:
                problems += await _refused(mesh, service, method, f"malformed filter {text[:20]!r}", filter=text)
            for text in UNKNOWN_FIELD_FILTERS:
                problems += await _refused(mesh, service, method, f"unknown field {text!r}", filter=text)
        for token in BAD_TOKENS:
            problems += await _refused(mesh, service, method, f"bad page token {token[:12]!r}", page_token=token)
        # The right shape and binding, signed with another key; then one character edited.
        binding = query_binding(_request(service, method))
        forged = forger.encode(("2024-01-01", "x_1"), binding)
        problems += await _refused(mesh, service, method, "forged page token", page_token=forged)
        edited = forged[:-2] + ("AA" if not forged.endswith("AA") else "BB")
        problems += await _refused(mesh, service, method, "edited page token", page_token=edited)
    assert not problems, "\n".join(problems)


async def test_a_real_page_token_is_refused_by_every_other_listing(mesh):
    # team_hub's role catalogue always has more than one entry, so it yields a real token.
    service, roles = next((s, m) for s, m in LIST_METHODS if m.name == "ListRoles")
    module = importlib.import_module(REGISTRY.service(service).pb2_module)
    first = getattr(module, roles.output_type.rsplit(".", 1)[1]).FromString(
        await _grpc(mesh, service, roles, _request(service, roles, page_size=1))
    )
    assert first.next_page_token
    second = await _grpc(mesh, service, roles, _request(service, roles, page_size=1, page_token=first.next_page_token))
    assert not isinstance(second, grpc.aio.AioRpcError), second  # the control: it is a good token for its listing
    problems: list[str] = []
    for other_service, method in LIST_METHODS:
        if method.name != "ListRoles":
            problems += await _refused(
                mesh, other_service, method, "another listing's page token", page_token=first.next_page_token
            )
    assert not problems, "\n".join(problems)
