"""AgentsService over a real gRPC server (port 0), with real tokens and a real database."""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mesh.config import Settings
from mesh.kit.clock import FixedClock
from mesh.kit.tables import OutboxRow
from runtime.serve import InProcessMesh
from services.agents import service as agents_service
from tests.support.kit import kit_service
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc

ISSUER = TestIssuer()
pb = agents_service_pb2
Code = grpc.StatusCode


class Caller:
    """The AgentsService stub, calling as one principal."""

    def __init__(self, stub: agents_service_pb2_grpc.AgentsServiceStub, token: str, org: str) -> None:
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.parent = f"organizations/{org or '-'}"

    def __getattr__(self, method: str) -> Callable[[Any], Awaitable[Any]]:
        rpc = getattr(self._stub, method)
        return lambda request: rpc(request, metadata=self._metadata, timeout=10)


class Mesh:
    def __init__(self, in_process: InProcessMesh, channel: grpc.aio.Channel) -> None:
        self.host = in_process.hosts[0]
        stub = agents_service_pb2_grpc.AgentsServiceStub(channel)
        self.alice = Caller(stub, ISSUER.mint(subject="users/alice", org="org_a", role="ADMIN"), "org_a")
        self.bob = Caller(stub, ISSUER.mint(subject="users/bob", org="org_b", role="ADMIN"), "org_b")
        self.viewer = Caller(stub, ISSUER.mint(subject="users/vic", org="org_a", role="VIEWER"), "org_a")
        self.root = Caller(stub, ISSUER.mint(subject="users/root", org="", role="SUPER_ADMIN"), "")

    async def events(self, stream: str) -> list[tuple[str, dict[str, Any]]]:
        async with self.host.database.sessions.begin() as session:
            query = sa.select(OutboxRow).where(OutboxRow.stream == stream).order_by(OutboxRow.occurred_at)
            return [(row.event_type, json.loads(row.data)) for row in (await session.execute(query)).scalars()]


def connected(in_process: InProcessMesh) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{in_process.ports['agents']}")


@pytest.fixture
async def mesh(settings: Settings):
    async with (
        running_services(settings, ["agents"], issuer=ISSUER) as in_process,
        connected(in_process) as channel,
    ):
        yield Mesh(in_process, channel)


def ready_draft(**overrides: Any) -> agent_pb2.AgentConfig:
    values: dict[str, Any] = {
        "voice": "voices/v_aria",
        "language_code": "en-US",
        "prompt": "You book dental appointments.",
        "first_message": "Hello, this is the clinic.",
    }
    values.update(overrides)
    return agent_pb2.AgentConfig(**values)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


REQUEST_1 = "9b2f4c1e-3d5a-4b6c-8d7e-0f1a2b3c4d5e"


def stream(agent: agent_pb2.Agent) -> str:
    _, org, _, agent_id = agent.name.split("/")
    return f"agents-{org}-{agent_id}"


async def create(caller: Caller, agent: agent_pb2.Agent | None = None, **request: Any) -> agent_pb2.Agent:
    agent = agent or agent_pb2.Agent(display_name="Front desk")
    request.setdefault("parent", caller.parent)
    reply: pb.CreateAgentResponse = await caller.CreateAgent(pb.CreateAgentRequest(agent=agent, **request))
    return reply.agent


def listing(caller: Caller, **request: Any) -> pb.ListAgentsRequest:
    return pb.ListAgentsRequest(parent=caller.parent, **request)


async def create_published(caller: Caller, **request: Any) -> agent_pb2.Agent:
    agent = agent_pb2.Agent(display_name="Front desk", draft=ready_draft())
    created = await create(caller, agent, **request)
    reply: pb.PublishAgentResponse = await caller.PublishAgent(pb.PublishAgentRequest(name=created.name))
    return reply.agent


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def error_info(error: grpc.aio.AioRpcError) -> tuple[str, str, dict[str, str]]:
    """The (reason, domain, metadata) of the error's google.rpc.ErrorInfo."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason, info.domain, dict(info.metadata)
    raise AssertionError("no ErrorInfo in the status")


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details"
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    return {v.field: v.description for v in bad_request.field_violations}


# The whole life of an agent


async def test_an_agent_from_creation_to_deletion(mesh: Mesh):
    alice = mesh.alice
    agent = await create(alice, agent_pb2.Agent(display_name="Desk", description="Answers", labels={"team": "clinic"}))
    assert agent.name.startswith("organizations/org_a/agents/ag_")
    assert agent.organization_id == "org_a"
    assert agent.state == agent_pb2.AGENT_STATE_DRAFT
    assert agent.draft.max_call_duration.seconds == 600
    assert (agent.audit.creator, agent.audit.last_modifier) == ("users/alice", "users/alice")
    assert agent.latest_version == 0
    assert agent.etag

    edit = agent_pb2.Agent(name=agent.name, display_name="Front desk (EN)", draft=ready_draft(), etag=agent.etag)
    updated = (
        await alice.UpdateAgent(pb.UpdateAgentRequest(agent=edit, update_mask=mask("display_name", "draft")))
    ).agent
    assert updated.display_name == "Front desk (EN)"
    assert updated.description == "Answers"
    assert updated.draft.max_call_duration.seconds == 600  # the default survives a replaced draft
    assert updated.etag != agent.etag

    first = await alice.PublishAgent(pb.PublishAgentRequest(name=agent.name, change_note="launch", etag=updated.etag))
    assert first.agent.state == agent_pb2.AGENT_STATE_PUBLISHED
    assert first.agent.latest_version == 1
    assert first.agent_version.name == f"{agent.name}/versions/1"
    assert first.agent_version.config == updated.draft
    assert first.agent_version.change_note == "launch"
    assert first.agent_version.audit.creator == "users/alice"

    shorter = agent_pb2.Agent(name=agent.name, draft=agent_pb2.AgentConfig(first_message="Clinic, hi!"))
    await alice.UpdateAgent(pb.UpdateAgentRequest(agent=shorter, update_mask=mask("draft.first_message")))
    second = await alice.PublishAgent(pb.PublishAgentRequest(name=agent.name, change_note="shorter greeting"))
    assert second.agent.latest_version == 2

    versions = await alice.ListAgentVersions(pb.ListAgentVersionsRequest(parent=agent.name))
    assert [v.version for v in versions.agent_versions] == [2, 1]
    assert not versions.next_page_token
    one = (await alice.GetAgentVersion(pb.GetAgentVersionRequest(name=f"{agent.name}/versions/1"))).agent_version
    assert one.config.first_message == "Hello, this is the clinic."

    restored = (await alice.RestoreAgentVersion(pb.RestoreAgentVersionRequest(name=one.name))).agent
    assert restored.draft == one.config
    assert restored.state == agent_pb2.AGENT_STATE_PUBLISHED
    assert restored.latest_version == 2

    pinned = (await alice.PinAgentVersion(pb.PinAgentVersionRequest(name=agent.name, version=1))).agent
    assert pinned.pinned_version == 1

    archived = (await alice.ArchiveAgent(pb.ArchiveAgentRequest(name=agent.name))).agent
    assert archived.state == agent_pb2.AGENT_STATE_ARCHIVED
    assert archived.pinned_version == 1
    assert (await alice.ListAgents(listing(alice))).agents == []
    assert [a.name for a in (await alice.ListAgents(listing(alice, show_archived=True))).agents] == [agent.name]
    rename = agent_pb2.Agent(name=agent.name, display_name="Nope")
    error = await refused(alice.UpdateAgent(pb.UpdateAgentRequest(agent=rename, update_mask=mask("display_name"))))
    assert error.code() == Code.FAILED_PRECONDITION
    assert "archived" in (error.details() or "")
    assert error_info(error) == ("AGENT_ARCHIVED", "agents.vocelio.com", {})

    unarchived = (await alice.UnarchiveAgent(pb.UnarchiveAgentRequest(name=agent.name))).agent
    assert unarchived.state == agent_pb2.AGENT_STATE_PUBLISHED
    assert unarchived.pinned_version == 1

    stale = await refused(alice.DeleteAgent(pb.DeleteAgentRequest(name=agent.name, etag=archived.etag)))
    assert stale.code() == Code.ABORTED
    await alice.DeleteAgent(pb.DeleteAgentRequest(name=agent.name, etag=unarchived.etag))
    assert (await refused(alice.GetAgent(pb.GetAgentRequest(name=agent.name)))).code() == Code.NOT_FOUND
    gone = await refused(alice.GetAgentVersion(pb.GetAgentVersionRequest(name=one.name)))
    assert gone.code() == Code.NOT_FOUND

    history = await mesh.events(stream(agent))
    assert [event_type for event_type, _ in history] == [
        "agent.created",
        "agent.updated",
        "agent.published",
        "agent.updated",
        "agent.published",
        "agent.updated",
        "agent.updated",
        "agent.archived",
        "agent.updated",
        "agent.deleted",
    ]
    assert history[1][1]["changed"] == ["display_name", "draft"]
    assert history[2][1]["agentVersion"]["version"] == 1
    assert history[5][1]["restoredFrom"] == one.name
    assert history[6][1]["changed"] == ["pinned_version"]
    assert history[-1][1] == {"name": agent.name}


async def test_a_never_published_agent_unarchives_to_draft(mesh: Mesh):
    agent = await create(mesh.alice)
    archived = (await mesh.alice.ArchiveAgent(pb.ArchiveAgentRequest(name=agent.name))).agent
    again = (await mesh.alice.ArchiveAgent(pb.ArchiveAgentRequest(name=agent.name))).agent
    assert again.etag == archived.etag  # idempotent: nothing changed
    error = await refused(mesh.alice.PublishAgent(pb.PublishAgentRequest(name=agent.name)))
    assert error.code() == Code.FAILED_PRECONDITION
    back = (await mesh.alice.UnarchiveAgent(pb.UnarchiveAgentRequest(name=agent.name))).agent
    assert back.state == agent_pb2.AGENT_STATE_DRAFT
    assert (await mesh.alice.UnarchiveAgent(pb.UnarchiveAgentRequest(name=agent.name))).agent.etag == back.etag
    assert [t for t, _ in await mesh.events(stream(agent))] == [
        "agent.created",
        "agent.archived",
        "agent.updated",
    ]


# Creating


async def test_create_is_idempotent_per_request_id_and_organisation(mesh: Mesh):
    first = await create(mesh.alice, request_id=REQUEST_1)
    retry = await create(mesh.alice, request_id=REQUEST_1)
    assert retry == first
    assert len((await mesh.alice.ListAgents(listing(mesh.alice))).agents) == 1
    other_body = await refused(
        mesh.alice.CreateAgent(
            pb.CreateAgentRequest(
                parent=mesh.alice.parent, agent=agent_pb2.Agent(display_name="Other"), request_id=REQUEST_1
            )
        )
    )
    assert other_body.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(other_body)) == {"request_id"}
    elsewhere = await create(mesh.bob, request_id=REQUEST_1)
    assert elsewhere.name != first.name
    await mesh.alice.DeleteAgent(pb.DeleteAgentRequest(name=first.name))
    # AIP-155: the retry of a create that succeeded gets its first answer, and creates nothing.
    assert await create(mesh.alice, request_id=REQUEST_1) == first
    assert (await mesh.alice.ListAgents(listing(mesh.alice))).agents == []


async def test_publish_is_idempotent_per_request_id(mesh: Mesh):
    agent = await create(mesh.alice, agent_pb2.Agent(display_name="Desk", draft=ready_draft()))
    request = pb.PublishAgentRequest(name=agent.name, etag=agent.etag, request_id=REQUEST_1)
    first = await mesh.alice.PublishAgent(request)
    retry = await mesh.alice.PublishAgent(request)  # the etag is stale now, the answer is the first one
    assert retry == first
    assert first.agent.latest_version == 1
    bad = await refused(mesh.alice.PublishAgent(pb.PublishAgentRequest(name=agent.name, request_id="nope")))
    assert set(field_violations(bad)) == {"request_id"}


async def test_chosen_ids_are_unique_per_organisation(mesh: Mesh):
    agent = await create(mesh.alice, agent_id="front-desk")
    assert agent.name == "organizations/org_a/agents/front-desk"
    error = await refused(
        mesh.alice.CreateAgent(
            pb.CreateAgentRequest(
                parent=mesh.alice.parent, agent=agent_pb2.Agent(display_name="Again"), agent_id="front-desk"
            )
        )
    )
    assert error.code() == Code.ALREADY_EXISTS
    # Another organisation may use the same id, and each sees only its own.
    theirs = await create(mesh.bob, agent_pb2.Agent(display_name="Bob's desk"), agent_id="front-desk")
    assert theirs.name == "organizations/org_b/agents/front-desk"
    assert [a.display_name for a in (await mesh.alice.ListAgents(listing(mesh.alice))).agents] == ["Front desk"]
    assert [a.display_name for a in (await mesh.bob.ListAgents(listing(mesh.bob))).agents] == ["Bob's desk"]
    assert (await mesh.alice.GetAgent(pb.GetAgentRequest(name=agent.name))).agent == agent


async def test_contract_rule_violations_are_refused_before_the_service_runs(mesh: Mesh):
    agent = agent_pb2.Agent(
        display_name="Front desk",
        draft=agent_pb2.AgentConfig(model_temperature=2.5, interruption_sensitivity=-1),
    )
    error = await refused(
        mesh.alice.CreateAgent(
            pb.CreateAgentRequest(parent=mesh.alice.parent, agent=agent, agent_id="X", request_id="a b")
        )
    )
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        "agent.draft.model_temperature",
        "agent.draft.interruption_sensitivity",
        "agent_id",
        "request_id",
    }


async def test_field_violations_arrive_as_bad_request_details(mesh: Mesh):
    # Within the contract's rules, so the service's own validation lists everything it refuses.
    agent = agent_pb2.Agent(
        display_name="",
        labels={"Team": "x"},
        draft=agent_pb2.AgentConfig(
            voice="aria", fallback_voice="voices/v1", language_code="english", script="flows/f1",
        ),
    )  # fmt: skip
    error = await refused(
        mesh.alice.CreateAgent(pb.CreateAgentRequest(parent=mesh.alice.parent, agent=agent, agent_id="Xy z"))
    )
    assert error.code() == Code.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        "agent.display_name",
        'agent.labels["Team"]',
        "agent.draft.voice",
        "agent.draft.language_code",
        "agent.draft.script",
        "agent_id",
    }


async def test_only_members_of_an_organisation_create_agents(mesh: Mesh):
    agent = agent_pb2.Agent(display_name="X")
    error = await refused(mesh.root.CreateAgent(pb.CreateAgentRequest(parent="organizations/org_a", agent=agent)))
    assert error.code() == Code.FAILED_PRECONDITION
    error = await refused(mesh.viewer.CreateAgent(pb.CreateAgentRequest(parent=mesh.viewer.parent, agent=agent)))
    assert error.code() == Code.PERMISSION_DENIED
    for parent in ("organizations/org_b", "organizations/nowhere"):
        error = await refused(mesh.alice.CreateAgent(pb.CreateAgentRequest(parent=parent, agent=agent)))
        assert error.code() == Code.PERMISSION_DENIED, parent
        assert error.details() == "the caller may not act in the organisation named by parent"
    for parent in ("", "organizations/-"):  # "-" only ever lists (AIP-159)
        error = await refused(mesh.alice.CreateAgent(pb.CreateAgentRequest(parent=parent, agent=agent)))
        assert set(field_violations(error)) == {"parent"}


# Updating


async def test_update_masks_are_checked(mesh: Mesh):
    agent = await create(mesh.alice)
    for paths, field in [
        (["state"], "update_mask.paths[0]"),
        (["display_name", "latest_version"], "update_mask.paths[1]"),
        (["draft.colour"], "update_mask.paths[0]"),
    ]:
        error = await refused(mesh.alice.UpdateAgent(pb.UpdateAgentRequest(agent=agent, update_mask=mask(*paths))))
        assert error.code() == Code.INVALID_ARGUMENT
        assert set(field_violations(error)) == {field}
    bad = agent_pb2.Agent(name=agent.name, draft=agent_pb2.AgentConfig(end_call_after_silence={"seconds": 3}))
    error = await refused(mesh.alice.UpdateAgent(pb.UpdateAgentRequest(agent=bad, update_mask=mask("draft"))))
    assert set(field_violations(error)) == {"agent.draft.end_call_after_silence"}


async def test_an_empty_mask_updates_the_fields_sent(mesh: Mesh):
    agent = await create(mesh.alice, agent_pb2.Agent(display_name="Desk", description="keep"))
    patch = agent_pb2.Agent(name=agent.name, display_name="Renamed", draft=agent_pb2.AgentConfig(prompt="New"))
    updated = (await mesh.alice.UpdateAgent(pb.UpdateAgentRequest(agent=patch))).agent
    assert (updated.display_name, updated.description, updated.draft.prompt) == ("Renamed", "keep", "New")


async def test_stale_etags_abort_every_guarded_change(mesh: Mesh):
    agent = await create(mesh.alice, agent_pb2.Agent(display_name="Desk", draft=ready_draft()))
    patch = agent_pb2.Agent(name=agent.name, display_name="Fresh", etag=agent.etag)
    await mesh.alice.UpdateAgent(pb.UpdateAgentRequest(agent=patch, update_mask=mask("display_name")))
    stale = agent.etag
    patch.display_name = "Late"
    for call in (
        mesh.alice.UpdateAgent(pb.UpdateAgentRequest(agent=patch, update_mask=mask("display_name"))),
        mesh.alice.PublishAgent(pb.PublishAgentRequest(name=agent.name, etag=stale)),
        mesh.alice.DeleteAgent(pb.DeleteAgentRequest(name=agent.name, etag=stale)),
    ):
        assert (await refused(call)).code() == Code.ABORTED
    assert (await mesh.alice.GetAgent(pb.GetAgentRequest(name=agent.name))).agent.display_name == "Fresh"


# Publishing and versions


async def test_publishing_needs_a_ready_and_changed_draft(mesh: Mesh):
    agent = await create(mesh.alice)
    error = await refused(mesh.alice.PublishAgent(pb.PublishAgentRequest(name=agent.name)))
    assert error.code() == Code.FAILED_PRECONDITION
    for field in ("draft.language_code", "draft.voice", "draft.prompt", "draft.first_message"):
        assert field in (error.details() or "")
    published = await create_published(mesh.alice)
    error = await refused(mesh.alice.PublishAgent(pb.PublishAgentRequest(name=published.name)))
    assert (error.code(), error.details()) == (Code.FAILED_PRECONDITION, "nothing changed since version 1")
    assert error_info(error) == ("NOTHING_TO_PUBLISH", "agents.vocelio.com", {"latest_version": "1"})


async def test_pinning_needs_an_existing_version(mesh: Mesh):
    agent = await create_published(mesh.alice)
    missing = await refused(mesh.alice.PinAgentVersion(pb.PinAgentVersionRequest(name=agent.name, version=2)))
    assert (missing.code(), missing.details()) == (Code.NOT_FOUND, f"{agent.name}/versions/2 not found")
    negative = await refused(mesh.alice.PinAgentVersion(pb.PinAgentVersionRequest(name=agent.name, version=-1)))
    assert negative.code() == Code.INVALID_ARGUMENT
    pinned = (await mesh.alice.PinAgentVersion(pb.PinAgentVersionRequest(name=agent.name, version=1))).agent
    assert pinned.pinned_version == 1
    unpinned = (await mesh.alice.PinAgentVersion(pb.PinAgentVersionRequest(name=agent.name, version=0))).agent
    assert unpinned.pinned_version == 0


async def test_versions_page_newest_first(mesh: Mesh):
    agent = await create_published(mesh.alice)
    for n in range(2, 5):
        patch = agent_pb2.Agent(name=agent.name, draft=agent_pb2.AgentConfig(prompt=f"Prompt {n}"))
        await mesh.alice.UpdateAgent(pb.UpdateAgentRequest(agent=patch, update_mask=mask("draft.prompt")))
        await mesh.alice.PublishAgent(pb.PublishAgentRequest(name=agent.name))
    seen, token = [], ""
    while True:
        reply = await mesh.alice.ListAgentVersions(
            pb.ListAgentVersionsRequest(parent=agent.name, page_size=3, page_token=token)
        )
        seen += [v.version for v in reply.agent_versions]
        token = reply.next_page_token
        if not token:
            break
    assert seen == [4, 3, 2, 1]


# Listing


async def test_listing_pages_filters_and_refuses_bad_tokens(mesh: Mesh):
    names = []
    for i in range(5):
        names.append((await create(mesh.alice, agent_pb2.Agent(display_name=f"A{i}", labels={"n": str(i % 2)}))).name)
    await create(mesh.bob)
    first = await mesh.alice.ListAgents(listing(mesh.alice, page_size=2))
    assert [a.name for a in first.agents] == names[::-1][:2]
    rest = []
    token = first.next_page_token
    while token:
        page = await mesh.alice.ListAgents(listing(mesh.alice, page_size=2, page_token=token))
        rest += [a.name for a in page.agents]
        token = page.next_page_token
    assert rest == names[::-1][2:]

    odd = await mesh.alice.ListAgents(listing(mesh.alice, filter='state = DRAFT AND labels.n = "1"'))
    assert [a.name for a in odd.agents] == [names[3], names[1]]
    assert (await mesh.alice.ListAgents(listing(mesh.alice, filter="state = PUBLISHED"))).agents == []

    tampered = first.next_page_token[:-2] + ("AA" if not first.next_page_token.endswith("AA") else "BB")
    for request in (
        listing(mesh.alice, page_size=2, page_token=tampered),
        listing(mesh.alice, page_size=2, page_token=first.next_page_token, filter="state = DRAFT"),
        listing(mesh.alice, filter="display_name = 'x'"),
        listing(mesh.alice, page_size=-1),
    ):
        error = await refused(mesh.alice.ListAgents(request))
        assert error.code() == Code.INVALID_ARGUMENT, request
    error = await refused(mesh.alice.ListAgents(listing(mesh.alice, filter="state = LIVE")))
    assert (error.details() or "").startswith("unsupported filter")


# Tenancy


def name_methods(name: str) -> list[tuple[str, Any]]:
    """Every method that takes an agent or version name, called on ``name``."""
    version = f"{name}/versions/1"
    return [
        ("GetAgent", pb.GetAgentRequest(name=name)),
        ("UpdateAgent", pb.UpdateAgentRequest(agent=agent_pb2.Agent(name=name, display_name="Mine"))),
        ("DeleteAgent", pb.DeleteAgentRequest(name=name)),
        ("PublishAgent", pb.PublishAgentRequest(name=name)),
        ("PinAgentVersion", pb.PinAgentVersionRequest(name=name, version=1)),
        ("ArchiveAgent", pb.ArchiveAgentRequest(name=name)),
        ("UnarchiveAgent", pb.UnarchiveAgentRequest(name=name)),
        ("GetAgentVersion", pb.GetAgentVersionRequest(name=version)),
        ("ListAgentVersions", pb.ListAgentVersionsRequest(parent=name)),
        ("RestoreAgentVersion", pb.RestoreAgentVersionRequest(name=version)),
    ]  # fmt: skip


async def test_another_organisations_agent_is_indistinguishable_from_a_missing_one(mesh: Mesh):
    theirs = await create_published(mesh.bob)
    missing = "organizations/org_b/agents/ag_aaaaaaaaaaaaaaaa"
    for (method, foreign_request), (_, missing_request) in zip(
        name_methods(theirs.name), name_methods(missing), strict=True
    ):
        foreign = await refused(getattr(mesh.alice, method)(foreign_request))
        absent = await refused(getattr(mesh.alice, method)(missing_request))
        assert foreign.code() == absent.code() == Code.NOT_FOUND, method
        assert (foreign.details() or "").replace(theirs.name, missing) == absent.details(), method
    assert (await mesh.bob.GetAgent(pb.GetAgentRequest(name=theirs.name))).agent == theirs  # untouched
    assert (await mesh.alice.ListAgents(listing(mesh.alice))).agents == []
    # A parent the caller does not belong to: one answer whether or not the organisation exists.
    answers = set()
    for parent in ("organizations/org_b", "organizations/nowhere", "organizations/-"):
        error = await refused(mesh.alice.ListAgents(pb.ListAgentsRequest(parent=parent)))
        answers.add((error.code(), error.details()))
    assert answers == {(Code.PERMISSION_DENIED, "the caller may not act in the organisation named by parent")}


async def test_a_platform_admin_reads_every_organisation_but_changes_none(mesh: Mesh):
    theirs = await create_published(mesh.bob)
    assert (await mesh.root.GetAgent(pb.GetAgentRequest(name=theirs.name))).agent == theirs
    version = f"{theirs.name}/versions/1"
    assert (await mesh.root.GetAgentVersion(pb.GetAgentVersionRequest(name=version))).agent_version.version == 1
    assert len((await mesh.root.ListAgentVersions(pb.ListAgentVersionsRequest(parent=theirs.name))).agent_versions) == 1
    assert [a.name for a in (await mesh.root.ListAgents(listing(mesh.root))).agents] == [theirs.name]
    error = await refused(mesh.root.ArchiveAgent(pb.ArchiveAgentRequest(name=theirs.name)))
    assert error.code() == Code.PERMISSION_DENIED


# Deleting


class UsedBy:
    def __init__(self, *users: str) -> None:
        self.users = list(users)

    async def users_of(self, agent_name: str) -> list[str]:
        return self.users


async def test_an_agent_in_use_is_not_deleted(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(agents_service, "NoReferringServices", lambda: UsedBy("campaigns/c1", "phone_numbers/p1"))
    async with (
        running_services(sqlite_settings, ["agents"], issuer=ISSUER) as in_process,
        connected(in_process) as channel,
    ):
        mesh = Mesh(in_process, channel)
        agent = await create(mesh.alice)
        error = await refused(mesh.alice.DeleteAgent(pb.DeleteAgentRequest(name=agent.name)))
        assert error.code() == Code.FAILED_PRECONDITION
        assert error.details() == f"{agent.name} is still used by campaigns/c1, phone_numbers/p1"
        assert error_info(error) == ("AGENT_IN_USE", "agents.vocelio.com", {})
        assert (await mesh.alice.GetAgent(pb.GetAgentRequest(name=agent.name))).agent == agent


# The kit harness: the service runs on an injected clock, no monkeypatching


async def test_the_service_runs_on_the_injected_clock(sqlite_settings: Settings):
    moment = datetime.datetime(2026, 3, 1, 8, 30, tzinfo=datetime.UTC)
    async with kit_service(sqlite_settings, "agents", clock=FixedClock(moment)) as service:
        stub = service.stub(agents_service_pb2_grpc.AgentsServiceStub)
        request = pb.CreateAgentRequest(parent="organizations/org_a", agent=agent_pb2.Agent(display_name="Desk"))
        agent = (await stub.CreateAgent(request, metadata=service.as_user("org_a"), timeout=10)).agent
        assert agent.audit.create_time.ToDatetime(tzinfo=datetime.UTC) == moment
        assert isinstance(service.clock, FixedClock)
        service.clock.advance(datetime.timedelta(minutes=5))
        patch = agent_pb2.Agent(name=agent.name, display_name="Desk 2")
        updated = await stub.UpdateAgent(
            pb.UpdateAgentRequest(agent=patch, update_mask=mask("display_name")),
            metadata=service.as_user("org_a"),
            timeout=10,
        )
        assert updated.agent.audit.update_time.ToDatetime(tzinfo=datetime.UTC) == moment + datetime.timedelta(minutes=5)
        everywhere = await stub.ListAgents(
            pb.ListAgentsRequest(parent="organizations/-"), metadata=service.as_platform_admin(), timeout=10
        )
        assert [a.name for a in everywhere.agents] == [agent.name]
