"""The RBAC matrix, generated from the descriptors: every method × every role × own and
other organisation → the expected decision.

Part one runs all 23 services with every handler replaced by the UNIMPLEMENTED one, so
the answer shows exactly what the interceptors decided: UNIMPLEMENTED means "let
through", PERMISSION_DENIED means "refused before the handler". Part two uses the real
agents service for the organisation dimension: a permitted role sees its own
organisation's agent and gets NOT_FOUND for another organisation's, exactly as for a
missing one; a role without the permission is refused either way.
"""

from __future__ import annotations

import itertools

import grpc
import pytest

import runtime.server
from mesh.access import PLATFORM_ONLY, Role, default_access_table
from mesh.config import Settings
from mesh.registry import default_registry
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer, every_permission
from vocelio.agents.v1 import agent_pb2
from vocelio.agents.v1 import agents_service_pb2 as pb
from vocelio.agents.v1 import agents_service_pb2_grpc as pb_grpc

ISSUER = TestIssuer()
TABLE = default_access_table()
REGISTRY = default_registry()
ROLES = list(Role)


def _token(role: Role, org: str = "org_a") -> str:
    if role is Role.SUPER_ADMIN:
        return ISSUER.mint(subject="users/u_root", role="SUPER_ADMIN", org="")
    return ISSUER.mint(subject=f"users/u_{role.name.lower()}", role=role.name, org=org)


def _expected(role: Role | str, method) -> bool:
    policy = method.policy
    if policy.public:
        return True
    if not isinstance(role, Role):  # the mesh's own services: what their token's scopes allow
        return role == "SERVICE"
    if policy.internal:
        return False
    return TABLE.allows(role, policy.permission)


# --- the table itself ----------------------------------------------------------------


def test_every_pattern_in_the_table_names_a_real_permission():
    assert TABLE.unused_patterns() == []


def test_each_role_holds_everything_the_roles_below_hold():
    for lower, higher in itertools.pairwise(ROLES):
        if higher is Role.SUPER_ADMIN:
            assert TABLE.permissions(higher) == {"*"}
        else:
            assert TABLE.permissions(lower) <= TABLE.permissions(higher), (lower, higher)


def test_readers_cannot_change_anything():
    writes = {"create", "update", "delete", "start", "publish", "purchase", "revoke", "rotate", "cancel", "hangup"}
    for role in (Role.GUEST, Role.VIEWER):
        changing = {p for p in TABLE.permissions(role) if p.rsplit(".", 1)[1] in writes}
        # A reader may manage only their own sessions, profile and inbox.
        assert changing <= {"sessions.delete", "users.update", "notifications.update"}, changing


def test_platform_and_internal_permissions_never_reach_an_organisation_role():
    import fnmatch

    for role in ROLES[:-1]:
        granted = TABLE.permissions(role)
        assert not {p for p in granted if any(fnmatch.fnmatchcase(p, pattern) for pattern in PLATFORM_ONLY)}
        assert not granted & TABLE.internal_only


def test_every_role_may_accept_an_invitation_to_another_organisation():
    # Accepting is the invitee's act; their role is the one they hold where they are now.
    assert [role for role in ROLES if not TABLE.allows(role, "invitations.accept")] == []
    # ... and accepting is all a reader may do with invitations.
    assert {p for p in TABLE.permissions(Role.VIEWER) if p.startswith("invitations.")} == {"invitations.accept"}


def test_every_permission_of_the_contracts_is_held_by_someone():
    assert TABLE.all_permissions
    for permission in TABLE.all_permissions:
        assert TABLE.allows(Role.SUPER_ADMIN, permission)


# --- the interceptors, method by method ----------------------------------------------


@pytest.fixture
async def unimplemented_mesh(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runtime.server, "load_service_module", lambda _spec: None)
    async with running_services(sqlite_settings, issuer=ISSUER) as mesh:
        yield mesh


async def _decision(channel, method, token: str | None) -> str:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        if method.server_streaming:
            call = channel.unary_stream(method.path, None, None)(b"", timeout=5, metadata=metadata)
            await call.read()
        else:
            await channel.unary_unary(method.path, None, None)(b"", timeout=5, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def test_matrix_every_method_every_role(unimplemented_mesh):
    principals: dict[str, tuple[Role | str, str]] = {role.name: (role, _token(role)) for role in ROLES}
    # The edge's token carries no permission at all.
    principals["EDGE"] = ("EDGE", ISSUER.mint_service("edge"))
    principals["SERVICE"] = ("SERVICE", "")  # per service below
    # A user of another organisation decides the same at this layer: organisation is the store's concern.
    principals["ADMIN@org_b"] = (Role.ADMIN, _token(Role.ADMIN, "org_b"))
    mismatches = []
    cells = 0
    for host in unimplemented_mesh.hosts:
        # A service whose contract declared every call of this one (the whole table would exceed the token cap).
        principals["SERVICE"] = ("SERVICE", ISSUER.mint_service("tests", scope=every_permission(host.spec)))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            for method in host.spec.methods:
                for label, (role, token) in principals.items():
                    decision = await _decision(channel, method, token)
                    expected = "UNIMPLEMENTED" if _expected(role, method) else "PERMISSION_DENIED"
                    cells += 1
                    if decision != expected:
                        mismatches.append(f"{method.path} as {label}: {decision}, expected {expected}")
    assert cells == len(principals) * sum(len(s.methods) for s in REGISTRY)
    assert not mismatches, "\n".join(mismatches[:30])


# --- the organisation dimension, on the real agents service --------------------------

AGENT_METHODS = {
    "GetAgent": lambda name: pb.GetAgentRequest(name=name),
    "UpdateAgent": lambda name: pb.UpdateAgentRequest(
        agent=agent_pb2.Agent(name=name, display_name="Renamed"), update_mask={"paths": ["display_name"]}
    ),
    "PublishAgent": lambda name: pb.PublishAgentRequest(name=name),
    "PinAgentVersion": lambda name: pb.PinAgentVersionRequest(name=name, version=0),
    "ArchiveAgent": lambda name: pb.ArchiveAgentRequest(name=name),
    "UnarchiveAgent": lambda name: pb.UnarchiveAgentRequest(name=name),
    "ListAgentVersions": lambda name: pb.ListAgentVersionsRequest(parent=name),
    "GetAgentVersion": lambda name: pb.GetAgentVersionRequest(name=f"{name}/versions/1"),
    "RestoreAgentVersion": lambda name: pb.RestoreAgentVersionRequest(name=f"{name}/versions/1"),
    "DeleteAgent": lambda name: pb.DeleteAgentRequest(name=name),
}


@pytest.fixture
async def agents_stub(sqlite_settings: Settings):
    async with running_services(sqlite_settings, ["agents"], issuer=ISSUER) as mesh:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{mesh.hosts[0].port}")
        yield pb_grpc.AgentsServiceStub(channel)
        await channel.close(None)


def _auth(token: str):
    return (("authorization", f"Bearer {token}"),)


async def _published_agent(stub, owner: str) -> str:
    created = await stub.CreateAgent(
        pb.CreateAgentRequest(
            parent="organizations/org_a",
            agent=agent_pb2.Agent(
                display_name="Front desk",
                draft=agent_pb2.AgentConfig(
                    language_code="en-US", voice="voices/v1", prompt="Be helpful.", first_message="Hello!"
                ),
            ),
        ),
        metadata=_auth(owner),
    )
    await stub.PublishAgent(pb.PublishAgentRequest(name=created.agent.name), metadata=_auth(owner))
    return str(created.agent.name)


@pytest.mark.parametrize("method_name", sorted(AGENT_METHODS))
async def test_matrix_own_and_other_organisation_on_agents(agents_stub, method_name):
    method = REGISTRY.method(f"/vocelio.agents.v1.AgentsService/{method_name}")
    assert method is not None
    owner = _token(Role.ADMIN)
    for role in ROLES:
        if role is Role.SUPER_ADMIN:
            continue  # platform administrators act across organisations; covered by the agents tests
        for org in ("org_a", "org_b"):
            name = await _published_agent(agents_stub, owner)  # fresh, so destructive methods start clean
            call = getattr(agents_stub, method_name)
            try:
                await call(AGENT_METHODS[method_name](name), metadata=_auth(_token(role, org)), timeout=5)
                outcome = "OK"
            except grpc.aio.AioRpcError as error:
                outcome = error.code().name
            if not _expected(role, method):
                assert outcome == "PERMISSION_DENIED", (method_name, role.name, org, outcome)
            elif org == "org_b":
                assert outcome == "NOT_FOUND", (method_name, role.name, org, outcome)
            else:
                # Allowed in its own organisation: whatever the state machine says, never a refusal.
                assert outcome not in ("PERMISSION_DENIED", "NOT_FOUND", "UNAUTHENTICATED"), (
                    method_name,
                    role.name,
                    outcome,
                )
