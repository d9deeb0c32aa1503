"""The agents service's pure rules: no network, no database."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from google.protobuf import duration_pb2

from mesh.errors import Aborted, FailedPrecondition, InvalidArgument, PermissionDenied
from mesh.principal import Principal, PrincipalKind
from services.agents.domain import etags, masks, names, paging, tenancy, validation
from services.agents.domain.filtering import AgentFilter, parse_filter
from services.agents.domain.lifecycle import Action, AgentState, next_state, plan_publish, publish_blockers
from vocelio.agents.v1 import agent_pb2, agents_service_pb2

DRAFT, PUBLISHED, ARCHIVED = AgentState.DRAFT, AgentState.PUBLISHED, AgentState.ARCHIVED


def ready_config(**overrides: Any) -> agent_pb2.AgentConfig:
    values: dict[str, Any] = {
        "voice": "voices/v_1",
        "language_code": "en-US",
        "prompt": "Sell solar panels.",
        "first_message": "Hi!",
    }
    values.update(overrides)
    return agent_pb2.AgentConfig(**values)


def seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


# Validation


@pytest.mark.parametrize(
    ("agent", "bad_field"),
    [
        (agent_pb2.Agent(display_name=""), "display_name"),
        (agent_pb2.Agent(display_name="   "), "display_name"),
        (agent_pb2.Agent(display_name="x" * 101), "display_name"),
        (agent_pb2.Agent(display_name="two\nlines"), "display_name"),
        (agent_pb2.Agent(display_name="A", description="d" * 2001), "description"),
        (agent_pb2.Agent(display_name="A", description="nul\x00byte"), "description"),
        (agent_pb2.Agent(display_name="A", labels={"Team": "sales"}), 'labels["Team"]'),
        (agent_pb2.Agent(display_name="A", labels={"team": "Sales Team"}), 'labels["team"]'),
        (agent_pb2.Agent(display_name="A", labels={f"k{i}": "v" for i in range(65)}), "labels"),
    ],
)
def test_agent_fields_are_checked(agent, bad_field):
    assert set(validation.agent_violations(agent)) == {bad_field}


@pytest.mark.parametrize(
    ("config", "bad_field"),
    [
        (agent_pb2.AgentConfig(voice="alice"), "draft.voice"),
        (agent_pb2.AgentConfig(voice="voices/"), "draft.voice"),
        (agent_pb2.AgentConfig(voice="scripts/s1"), "draft.voice"),
        (agent_pb2.AgentConfig(fallback_voice="voices/a b"), "draft.fallback_voice"),
        (agent_pb2.AgentConfig(voice="voices/v1", fallback_voice="voices/v1"), "draft.fallback_voice"),
        (agent_pb2.AgentConfig(script="flows/f1"), "draft.script"),
        (agent_pb2.AgentConfig(flow="scripts/s1"), "draft.flow"),
        (agent_pb2.AgentConfig(language_code="english"), "draft.language_code"),
        (agent_pb2.AgentConfig(language_code="en_US"), "draft.language_code"),
        (agent_pb2.AgentConfig(language_code="en-"), "draft.language_code"),
        (agent_pb2.AgentConfig(prompt="p" * 32_001), "draft.prompt"),
        (agent_pb2.AgentConfig(first_message="m" * 1001), "draft.first_message"),
        (agent_pb2.AgentConfig(first_message="two\nlines"), "draft.first_message"),
        (agent_pb2.AgentConfig(prompt="bell\x07"), "draft.prompt"),
        (agent_pb2.AgentConfig(end_call_phrases=["b" * 101]), "draft.end_call_phrases[0]"),
        (agent_pb2.AgentConfig(first_message_mode=99), "draft.first_message_mode"),  # type: ignore[arg-type]
        (agent_pb2.AgentConfig(voicemail_action=7), "draft.voicemail_action"),  # type: ignore[arg-type]
        (agent_pb2.AgentConfig(end_call_phrases=["bye", " "]), "draft.end_call_phrases[1]"),
        (agent_pb2.AgentConfig(end_call_phrases=["bye"] * 21), "draft.end_call_phrases"),
        (agent_pb2.AgentConfig(max_call_duration=seconds(59)), "draft.max_call_duration"),
        (agent_pb2.AgentConfig(max_call_duration=seconds(7201)), "draft.max_call_duration"),
        (
            agent_pb2.AgentConfig(max_call_duration=duration_pb2.Duration(seconds=100, nanos=-1)),
            "draft.max_call_duration",
        ),
        (agent_pb2.AgentConfig(end_call_after_silence=seconds(9)), "draft.end_call_after_silence"),
        (agent_pb2.AgentConfig(model_temperature=-0.1), "draft.model_temperature"),
        (agent_pb2.AgentConfig(model_temperature=2.01), "draft.model_temperature"),
        (agent_pb2.AgentConfig(model_temperature=math.nan), "draft.model_temperature"),
        (agent_pb2.AgentConfig(interruption_sensitivity=1.5), "draft.interruption_sensitivity"),
        (agent_pb2.AgentConfig(default_variables={"1st": "x"}), 'draft.default_variables["1st"]'),
        (agent_pb2.AgentConfig(default_variables={"name": "x" * 1001}), 'draft.default_variables["name"]'),
    ],
)
def test_config_fields_are_checked(config, bad_field):
    agent = agent_pb2.Agent(display_name="Sales", draft=config)
    assert set(validation.agent_violations(agent)) == {bad_field}


@pytest.mark.parametrize(
    "config",
    [
        agent_pb2.AgentConfig(),
        ready_config(),
        ready_config(language_code="zh-Hant-TW", fallback_voice="voices/other"),
        ready_config(language_code="es-419", script="scripts/s1", flow="flows/f-1"),
        ready_config(max_call_duration=seconds(60), end_call_after_silence=seconds(10)),
        ready_config(max_call_duration=seconds(7200), model_temperature=2.0, interruption_sensitivity=1.0),
        ready_config(model_temperature=0.0, interruption_sensitivity=0.0, default_variables={"first_name": "Ada"}),
        ready_config(prompt="Rules:\n\t1. Be brief.\r\n\t2. Be kind."),
    ],
)
def test_acceptable_configs_have_no_violations(config):
    assert validation.agent_violations(agent_pb2.Agent(display_name="Sales", draft=config)) == {}


def test_every_bad_field_is_named_at_once():
    request = agents_service_pb2.CreateAgentRequest(
        agent=agent_pb2.Agent(
            display_name="",
            draft=agent_pb2.AgentConfig(voice="nope", model_temperature=3, max_call_duration=seconds(5)),
        ),
        agent_id="Bad_Id",
        request_id="has space",
    )
    with pytest.raises(InvalidArgument) as caught:
        validation.require_valid(validation.create_violations(request), prefix="")
    assert set(caught.value.field_violations) == {
        "agent.display_name",
        "agent.draft.voice",
        "agent.draft.model_temperature",
        "agent.draft.max_call_duration",
        "agent_id",
        "request_id",
    }
    assert caught.value.message.startswith("6 invalid fields: ")


@pytest.mark.parametrize(
    ("agent_id", "ok"),
    [("sales-bot", True), ("abcd", True), ("a" * 63, True), ("abc", False), ("a" * 64, False), ("1abc", False),
     ("Sales", False), ("ag_abc", False), ("sales_bot", False)],
)  # fmt: skip
def test_chosen_agent_ids(agent_id, ok):
    assert (names.chosen_id_violation(agent_id) is None) is ok


def test_defaults_fill_only_what_is_unset():
    assert validation.with_defaults(agent_pb2.AgentConfig()).max_call_duration.seconds == 600
    explicit = agent_pb2.AgentConfig(max_call_duration=seconds(120))
    assert validation.with_defaults(explicit).max_call_duration.seconds == 120
    assert validation.with_defaults(explicit) is not explicit  # a copy, never the input


def test_change_notes_are_bounded():
    assert validation.change_note_violations("n" * 1000) == {}
    assert set(validation.change_note_violations("n" * 1001)) == {"change_note"}
    assert set(validation.change_note_violations("nul\x00")) == {"change_note"}


# Names


def test_names_round_trip():
    agent_id = names.new_agent_id()
    assert names.GENERATED_ID.fullmatch(agent_id)
    assert names.parse_agent_name(names.agent_name(agent_id)) == agent_id
    assert names.parse_version_name(names.version_name("sales-bot", 12)) == ("sales-bot", 12)


@pytest.mark.parametrize("name", ["", "agents/", "agents/ab", "voices/sales-bot", "agents/sales-bot/x", "sales-bot"])
def test_malformed_agent_names_are_invalid(name):
    with pytest.raises(InvalidArgument) as caught:
        names.parse_agent_name(name, field="parent")
    assert set(caught.value.field_violations) == {"parent"}


@pytest.mark.parametrize(
    "name", ["agents/sales-bot", "agents/sales-bot/versions/0", "agents/sales-bot/versions/01", "agents/sales-bot/v/1"]
)
def test_malformed_version_names_are_invalid(name):
    with pytest.raises(InvalidArgument):
        names.parse_version_name(name)


# State machine


@pytest.mark.parametrize(
    ("state", "action", "has_versions", "expected"),
    [
        (DRAFT, Action.EDIT, False, DRAFT),
        (DRAFT, Action.PIN, False, DRAFT),
        (DRAFT, Action.PUBLISH, False, PUBLISHED),
        (DRAFT, Action.ARCHIVE, False, ARCHIVED),
        (DRAFT, Action.UNARCHIVE, False, DRAFT),
        (PUBLISHED, Action.EDIT, True, PUBLISHED),
        (PUBLISHED, Action.PIN, True, PUBLISHED),
        (PUBLISHED, Action.PUBLISH, True, PUBLISHED),
        (PUBLISHED, Action.ARCHIVE, True, ARCHIVED),
        (PUBLISHED, Action.UNARCHIVE, True, PUBLISHED),
        (ARCHIVED, Action.ARCHIVE, True, ARCHIVED),
        (ARCHIVED, Action.UNARCHIVE, True, PUBLISHED),
        (ARCHIVED, Action.UNARCHIVE, False, DRAFT),
    ],
)
def test_legal_transitions(state, action, has_versions, expected):
    assert next_state(state, action, has_versions=has_versions) is expected


@pytest.mark.parametrize("action", [Action.EDIT, Action.PIN, Action.PUBLISH])
@pytest.mark.parametrize("has_versions", [False, True])
def test_an_archived_agent_refuses_changes(action, has_versions):
    with pytest.raises(FailedPrecondition, match="archived: unarchive it before"):
        next_state(ARCHIVED, action, has_versions=has_versions)


def test_every_state_and_action_is_decided():
    for state in AgentState:
        for action in Action:
            try:
                next_state(state, action, has_versions=True)
            except FailedPrecondition:
                assert state is ARCHIVED


def test_an_incomplete_draft_lists_every_blocker():
    blockers = publish_blockers(
        agent_pb2.AgentConfig(voicemail_action=agent_pb2.VOICEMAIL_ACTION_LEAVE_MESSAGE, model_temperature=5)
    )
    assert set(blockers) == {
        "draft.language_code",
        "draft.voice",
        "draft.prompt",
        "draft.first_message",
        "draft.voicemail_message",
        "draft.model_temperature",
    }


@pytest.mark.parametrize(
    "config",
    [
        ready_config(),
        ready_config(prompt="", script="scripts/s1"),
        ready_config(prompt="", flow="flows/f1"),
        ready_config(first_message="", first_message_mode=agent_pb2.FIRST_MESSAGE_MODE_CALLER_SPEAKS_FIRST),
    ],
)
def test_complete_drafts_can_be_published(config):
    assert publish_blockers(config) == {}


def test_publishing_numbers_versions_and_refuses_repeats():
    assert plan_publish(DRAFT, ready_config(), 0, None) == 1
    assert plan_publish(PUBLISHED, ready_config(prompt="New pitch."), 3, ready_config()) == 4
    with pytest.raises(FailedPrecondition, match=r"^nothing changed since version 3$"):
        plan_publish(PUBLISHED, ready_config(), 3, ready_config())
    with pytest.raises(FailedPrecondition, match="archived"):
        plan_publish(ARCHIVED, ready_config(prompt="x"), 3, ready_config())
    with pytest.raises(FailedPrecondition, match=r"not ready for calls: draft\.language_code is required"):
        plan_publish(DRAFT, ready_config(language_code=""), 0, None)


# Etags


def test_etags_change_with_every_revision_and_stale_ones_abort():
    created = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    first, second = etags.etag("a1", created, 1), etags.etag("a1", created, 2)
    assert first != second
    assert etags.etag("a1", created + datetime.timedelta(microseconds=1), 1) != first  # a re-created agent
    etags.check_etag("", second)
    etags.check_etag(second, second)
    with pytest.raises(Aborted):
        etags.check_etag(first, second)


# Update masks


def test_mask_paths_are_checked_and_canonical():
    patch = agent_pb2.Agent()
    assert masks.resolve_update_mask(["draft.prompt", "display_name", "draft"], patch) == ("display_name", "draft")
    assert masks.resolve_update_mask(["*"], patch) == masks.MUTABLE_FIELDS
    assert masks.resolve_update_mask(["labels", "draft.max_call_duration"], patch) == (
        "draft.max_call_duration",
        "labels",
    )


@pytest.mark.parametrize(
    ("paths", "problem"),
    [
        (["state"], "output only"),
        (["audit.creator"], "output only"),
        (["latest_version"], "output only"),
        (["organization_id"], "output only"),
        (["name"], "cannot be changed"),
        (["etag"], "compared, not written"),
        (["colour"], "not an updatable field"),
        (["draft.colour"], "not a field of AgentConfig"),
        (["draft.max_call_duration.seconds"], "not a field of AgentConfig"),
        (["draft."], "not a field path"),
    ],
)
def test_bad_mask_paths_are_refused(paths, problem):
    with pytest.raises(InvalidArgument) as caught:
        masks.resolve_update_mask(paths, agent_pb2.Agent())
    assert list(caught.value.field_violations) == ["update_mask.paths[0]"]
    assert problem in caught.value.field_violations["update_mask.paths[0]"]


def test_every_bad_mask_path_is_named():
    with pytest.raises(InvalidArgument) as caught:
        masks.resolve_update_mask(["display_name", "state", "bogus"], agent_pb2.Agent())
    assert set(caught.value.field_violations) == {"update_mask.paths[1]", "update_mask.paths[2]"}


def test_star_stands_alone():
    with pytest.raises(InvalidArgument):
        masks.resolve_update_mask(["*", "labels"], agent_pb2.Agent())


def test_an_empty_mask_means_the_populated_fields():
    patch = agent_pb2.Agent(
        display_name="New", state=agent_pb2.AGENT_STATE_ARCHIVED, draft=agent_pb2.AgentConfig(prompt="p")
    )
    assert masks.resolve_update_mask([], patch) == ("display_name", "draft.prompt")
    with pytest.raises(InvalidArgument, match="nothing to update"):
        masks.resolve_update_mask([], agent_pb2.Agent(name="agents/abcd", etag="x"))


def test_masked_fields_are_replaced_and_the_rest_kept():
    current = agent_pb2.Agent(
        name="agents/abcd",
        display_name="Old",
        description="keep me",
        labels={"team": "sales", "tier": "gold"},
        draft=ready_config(end_call_phrases=["bye", "ciao"]),
        state=agent_pb2.AGENT_STATE_PUBLISHED,
    )
    patch = agent_pb2.Agent(
        display_name="New",
        description="ignored: not in the mask",
        labels={"team": "support"},
        draft=agent_pb2.AgentConfig(prompt="New prompt", voice="voices/ignored", end_call_phrases=["bye now"]),
        state=agent_pb2.AGENT_STATE_ARCHIVED,
    )
    paths = masks.resolve_update_mask(["display_name", "labels", "draft.prompt", "draft.end_call_phrases"], patch)
    updated = masks.apply_update_mask(current, patch, paths)
    assert updated.display_name == "New"
    assert updated.description == "keep me"
    assert dict(updated.labels) == {"team": "support"}  # replaced, not merged
    assert updated.draft.prompt == "New prompt"
    assert updated.draft.voice == "voices/v_1"
    assert list(updated.draft.end_call_phrases) == ["bye now"]
    assert updated.state == agent_pb2.AGENT_STATE_PUBLISHED
    assert current.display_name == "Old"  # the input is not modified


def test_star_replaces_every_mutable_field():
    current = agent_pb2.Agent(display_name="Old", description="d", labels={"a": "b"}, draft=ready_config())
    patch = agent_pb2.Agent(display_name="New")
    updated = masks.apply_update_mask(current, patch, masks.resolve_update_mask(["*"], patch))
    assert (updated.display_name, updated.description, dict(updated.labels)) == ("New", "", {})
    assert not updated.HasField("draft")


# Filters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", AgentFilter()),
        ("   ", AgentFilter()),
        ("state = PUBLISHED", AgentFilter(state=PUBLISHED)),
        ("state=DRAFT", AgentFilter(state=DRAFT)),
        ('state = "ARCHIVED"', AgentFilter(state=ARCHIVED)),
        ("state = AGENT_STATE_PUBLISHED", AgentFilter(state=PUBLISHED)),
        ('labels.team = "sales"', AgentFilter(labels={"team": "sales"})),
        (
            'state = PUBLISHED AND labels.team = "sales" AND labels.tier-1 = "gold"',
            AgentFilter(state=PUBLISHED, labels={"team": "sales", "tier-1": "gold"}),
        ),
        ('labels.team = "a" AND labels.team = "a"', AgentFilter(labels={"team": "a"})),
    ],
)
def test_filters_that_parse(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "state = LIVE",
        "state != DRAFT",
        "state = DRAFT OR state = PUBLISHED",
        'state = DRAFT and labels.a = "b"',
        "state = DRAFT AND",
        "state = DRAFT AND state = PUBLISHED",
        'display_name = "x"',
        "labels.team = sales",
        'labels.Team = "sales"',
        'labels = "sales"',
        'labels.team = "a" AND labels.team = "b"',
        "state",
        "(state = DRAFT)",
        'labels.team = "unterminated',
        "x" * 1001,
    ],
)
def test_unsupported_filters_are_refused(text):
    with pytest.raises(InvalidArgument, match=r"^unsupported filter") as caught:
        parse_filter(text)
    assert set(caught.value.field_violations) == {"filter"}


# Paging


@pytest.mark.parametrize(("requested", "size"), [(0, 50), (1, 1), (100, 100), (101, 100), (10_000, 100)])
def test_page_sizes(requested, size):
    assert paging.page_size(requested) == size


def test_negative_page_sizes_are_invalid():
    with pytest.raises(InvalidArgument):
        paging.page_size(-1)


def test_page_tokens_round_trip():
    tokens = paging.PageTokens.from_secret("secret", "agents")
    token = tokens.encode((1_790_000_000_123_456, "ag_x"), "q")
    assert tokens.decode(token, "q") == (1_790_000_000_123_456, "ag_x")


def test_tampered_page_tokens_are_invalid():
    tokens = paging.PageTokens.from_secret("secret", "agents")
    token = tokens.encode((1_790_000_000_123_456, "ag_x"), "q")
    body, mac = token.split(".")
    forged_body = paging._b64encode(b'[1,"' + b"0" * 16 + b'",0,"ag_x"]')
    candidates = [
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # edited signature
        ("B" if body[0] != "B" else "C") + body[1:] + "." + mac,  # edited body
        forged_body + "." + mac,  # another position under the old signature
        body,  # no signature
        "." + mac,
        "not-a-token",
        "!!!.???",
        paging.PageTokens.from_secret("other secret", "agents").encode((1, "ag_x"), "q"),  # another key
        paging.PageTokens.from_secret("secret", "voices").encode((1, "ag_x"), "q"),  # another purpose
    ]
    for candidate in candidates:
        with pytest.raises(InvalidArgument) as caught:
            tokens.decode(candidate, "q")
        assert set(caught.value.field_violations) == {"page_token"}, candidate


def test_a_page_token_only_resumes_its_own_query():
    tokens = paging.PageTokens.from_secret("secret", "agents")
    token = tokens.encode((1, "ag_x"), "ListAgents|org_a|state = DRAFT|False")
    with pytest.raises(InvalidArgument, match="other parameters"):
        tokens.decode(token, "ListAgents|org_a||False")


def test_page_token_keys_must_be_long_enough():
    with pytest.raises(ValueError, match="16 bytes"):
        paging.PageTokens(b"short")


# Tenancy


def principal(role: str = "ADMIN", org: str = "org_a", kind: PrincipalKind = PrincipalKind.USER) -> Principal:
    return Principal(subject="users/u1", kind=kind, organization_id=org, role=role, permissions=frozenset({"*"}))


def test_members_read_and_change_their_own_organisation():
    member = principal()
    assert tenancy.reading_scope(member) == "org_a"
    assert tenancy.listing_scope(member) == "org_a"
    assert tenancy.owning_organization(member) == "org_a"
    tenancy.require_writable(member, "org_a")


def test_platform_admins_read_everywhere_but_change_only_their_own():
    admin = principal(role="SUPER_ADMIN", org="")
    assert tenancy.reading_scope(admin) is None
    assert tenancy.listing_scope(admin) is None
    with pytest.raises(PermissionDenied):
        tenancy.require_writable(admin, "org_b")
    with pytest.raises(FailedPrecondition, match="act within one"):
        tenancy.owning_organization(admin)
    in_org = principal(role="SUPER_ADMIN", org="org_a")
    assert tenancy.reading_scope(in_org) is None
    assert tenancy.listing_scope(in_org) == "org_a"
    service = principal(role="SERVICE", org="", kind=PrincipalKind.SERVICE)
    assert tenancy.reading_scope(service) is None
