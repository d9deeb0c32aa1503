"""One REST call through the edge and three services is one trace (in-memory exporter, in-process mesh).

An API-key call: the edge → agents (ListAgents) → developer_api (VerifyApiKey, the key's
first use) → team_hub (GetOrganization, the key's organisation must be active), each hop
with its SQL, all under the client's ``traceparent``; and the trace id comes back in
``traceresponse``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import grpc
import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mesh.config import Settings
from tests.support.mesh import running_services
from tests.support.tracing import recorded_spans
from vocelio.developer_api.v1 import api_key_pb2
from vocelio.developer_api.v1 import developer_api_service_pb2 as keys_pb
from vocelio.developer_api.v1 import developer_api_service_pb2_grpc as keys_grpc
from vocelio.identity.v1 import identity_service_pb2 as id_pb
from vocelio.identity.v1 import identity_service_pb2_grpc as id_grpc

PASSWORD = "correct horse battery staple"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
AGENTS = "vocelio.agents.v1.AgentsService/ListAgents"
VERIFY = "vocelio.developer_api.v1.DeveloperApiService/VerifyApiKey"
ORGANIZATION = "vocelio.team_hub.v1.TeamHubService/GetOrganization"


async def _api_key(ports: dict[str, int]) -> tuple[str, str]:
    """Sign up an organisation and create an API key in it: the organisation id and the key's secret."""
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{ports['identity']}") as identity_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{ports['developer_api']}") as keys_channel,
    ):
        identity = id_grpc.IdentityServiceStub(identity_channel)
        await identity.SignUp(
            id_pb.SignUpRequest(
                email="ada@tracing.test",
                password=PASSWORD,
                display_name="Ada",
                organization_display_name="Traced Org",
                terms_accepted=True,
            ),
            timeout=20,
        )
        tokens = await identity.IssueToken(
            id_pb.IssueTokenRequest(grant_type="password", username="ada@tracing.test", password=PASSWORD), timeout=20
        )
        reply = await keys_grpc.DeveloperApiServiceStub(keys_channel).CreateApiKey(
            keys_pb.CreateApiKeyRequest(
                parent=f"organizations/{tokens.organization_id}",
                api_key=api_key_pb2.ApiKey(
                    display_name="CI", scopes=["agents.list"], environment=api_key_pb2.API_KEY_ENVIRONMENT_LIVE
                ),
            ),
            metadata=(("authorization", f"Bearer {tokens.access_token}"),),
            timeout=20,
        )
        return tokens.organization_id, reply.secret


def _trace(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == CLIENT_TRACE]


async def _finished(spans: InMemorySpanExporter, names: Sequence[str]) -> list[ReadableSpan]:
    """The client's trace once spans named ``names`` have all ended (a bound of 20 s, not a measurement)."""
    for _ in range(2000):
        recorded = _trace(spans)
        if set(names) <= {s.name for s in recorded}:
            return recorded
        await asyncio.sleep(0.01)
    raise AssertionError(f"spans never ended: {sorted(set(names) - {s.name for s in _trace(spans)})}")


def _one(spans: list[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, (name, kind, [(s.name, s.kind) for s in spans])
    return found[0]


def _parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None
    parents = [s for s in spans if s.context.span_id == span.parent.span_id]
    assert len(parents) == 1, span.name
    return parents[0]


async def test_a_rest_call_across_three_services_is_one_trace(settings: Settings):
    with recorded_spans() as spans:
        names = ["identity", "team_hub", "developer_api", "agents"]
        async with running_services(dataclasses.replace(settings), names, edge=True) as mesh:
            organization, secret = await _api_key(mesh.ports)
            spans.clear()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge_port}", timeout=20) as edge:
                response = await edge.get(
                    f"/v1/organizations/{organization}/agents",
                    headers={"X-Api-Key": secret, "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
                )
            assert response.status_code == 200, response.text
            route = "GET /v1/{parent=organizations/*}/agents"
            trace = await _finished(spans, [route, AGENTS, VERIFY, ORGANIZATION])

    # The edge's span continues the client's and names the route, not the path.
    edge_span = _one(trace, route, SpanKind.SERVER)
    assert edge_span.parent is not None and f"{edge_span.parent.span_id:016x}" == CLIENT_SPAN
    assert (
        edge_span.attributes is not None and edge_span.attributes["http.route"] == "/v1/{parent=organizations/*}/agents"
    )
    assert response.headers["traceresponse"].startswith(f"00-{CLIENT_TRACE}-{edge_span.context.span_id:016x}-")

    # edge → agents → (client) → developer_api → (client) → team_hub, each server span with its code.
    agents = _one(trace, AGENTS, SpanKind.SERVER)
    assert _parent_of(agents, trace) is edge_span
    verify_call = _one(trace, f"/{VERIFY}", SpanKind.CLIENT)
    verify = _one(trace, VERIFY, SpanKind.SERVER)
    assert _parent_of(verify, trace) is verify_call
    assert _parent_of(verify_call, trace) is agents
    lookup_call = _one(trace, f"/{ORGANIZATION}", SpanKind.CLIENT)
    lookup = _one(trace, ORGANIZATION, SpanKind.SERVER)
    assert _parent_of(lookup, trace) is lookup_call
    assert _parent_of(lookup_call, trace) is verify
    for span in (agents, verify_call, verify, lookup_call, lookup):
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.grpc.status_code"] == 0, span.name
        assert span.status.status_code == StatusCode.UNSET, span.name
    assert agents.attributes is not None and agents.attributes["rpc.service"] == "vocelio.agents.v1.AgentsService"
    assert agents.attributes["rpc.method"] == "ListAgents"

    # SQL under the services' spans (the engine's statements and the point reads alike).
    sql = [s for s in trace if s.kind == SpanKind.CLIENT and s.attributes and "db.system" in s.attributes]
    assert sql, [s.name for s in trace]
    servers = {s.context.span_id: s for s in (agents, verify, lookup)}
    sql_parents = set()
    for statement in sql:
        parent = statement
        while parent.context.span_id not in servers and parent.parent is not None:
            parent = _parent_of(parent, trace)
        sql_parents.add(parent.name)
    assert sql_parents == {AGENTS, VERIFY, ORGANIZATION}
    assert all(s.context.trace_id == edge_span.context.trace_id for s in trace)


async def test_a_refused_call_is_one_trace_with_its_codes(sqlite_settings: Settings):
    with recorded_spans() as spans:
        async with running_services(
            sqlite_settings, ["identity", "team_hub", "developer_api", "agents"], edge=True
        ) as mesh:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge_port}", timeout=20) as edge:
                response = await edge.get(
                    "/v1/organizations/org_x/agents",
                    headers={"X-Api-Key": "vk_live_" + "0" * 40, "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
                )
            assert response.status_code == 401, response.text
            route = "GET /v1/{parent=organizations/*}/agents"
            trace = await _finished(spans, [route, AGENTS])
    edge_span = _one(trace, route, SpanKind.SERVER)
    assert edge_span.attributes is not None and edge_span.attributes["http.status_code"] == 401
    agents = _one(trace, AGENTS, SpanKind.SERVER)
    assert _parent_of(agents, trace) is edge_span
    assert agents.attributes is not None
    assert agents.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert agents.status.status_code == StatusCode.UNSET  # the caller's mistake, not the server's
    assert response.headers["traceresponse"].split("-")[1] == CLIENT_TRACE
