"""The agents service's pure rules: no network, no database."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf import duration_pb2

from mesh.errors import FailedPrecondition, InvalidArgument
from mesh.kit import ids
from mesh.kit.validation import require_valid
from services.agents.domain import names, validation
from services.agents.domain.lifecycle import Action, AgentState, next_state, plan_publish, publish_blockers
from vocelio.agents.v1 import agent_pb2, agents_service_pb2

DRAFT, PUBLISHED, ARCHIVED = AgentState.DRAFT, AgentState.PUBLISHED, AgentState.ARCHIVED
ORG = "org_a"


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
    assert set(validation.agent_violations(agent, ORG)) == {bad_field}


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
        (agent_pb2.AgentConfig(script="organizations/org_b/scripts/s1"), "draft.script"),
        (agent_pb2.AgentConfig(voice="organizations/org_b/voices/v1"), "draft.voice"),
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
    assert set(validation.agent_violations(agent, ORG)) == {bad_field}


@pytest.mark.parametrize(
    "config",
    [
        agent_pb2.AgentConfig(),
        ready_config(),
        ready_config(language_code="zh-Hant-TW", fallback_voice="voices/other"),
        ready_config(voice="organizations/org_a/voices/cloned"),
        ready_config(
            language_code="es-419", script="organizations/org_a/scripts/s1", flow="organizations/org_a/flows/f-1"
        ),
        ready_config(max_call_duration=seconds(60), end_call_after_silence=seconds(10)),
        ready_config(max_call_duration=seconds(7200), model_temperature=2.0, interruption_sensitivity=1.0),
        ready_config(model_temperature=0.0, interruption_sensitivity=0.0, default_variables={"first_name": "Ada"}),
        ready_config(prompt="Rules:\n\t1. Be brief.\r\n\t2. Be kind."),
    ],
)
def test_acceptable_configs_have_no_violations(config):
    assert validation.agent_violations(agent_pb2.Agent(display_name="Sales", draft=config), ORG) == {}


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
        require_valid(validation.create_violations(request, ORG))
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
    [("sales-bot", True), ("abc", True), ("a" * 63, True), ("ab", False), ("a" * 64, False), ("1abc", False),
     ("Sales", False), ("ag_abc", False), ("sales_bot", False)],
)  # fmt: skip
def test_chosen_agent_ids(agent_id, ok):
    assert (ids.chosen_id_problem(agent_id) is None) is ok


def test_defaults_fill_only_what_is_unset():
    assert validation.with_defaults(agent_pb2.AgentConfig()).max_call_duration.seconds == 600
    explicit = agent_pb2.AgentConfig(max_call_duration=seconds(120))
    assert validation.with_defaults(explicit).max_call_duration.seconds == 120
    assert validation.with_defaults(explicit) is not explicit  # a copy, never the input


def test_publish_requests_are_checked():
    def problems(**fields: str) -> set[str]:
        return set(validation.publish_violations(agents_service_pb2.PublishAgentRequest(name="n", **fields)))

    assert problems(change_note="n" * 1000, request_id="123e4567-e89b-42d3-a456-426614174000") == set()
    assert problems(change_note="n" * 1001) == {"change_note"}
    assert problems(change_note="nul\x00") == {"change_note"}
    assert problems(request_id="not-a-uuid") == {"request_id"}


# Names


def test_names_round_trip():
    agent_id = names.new_agent_id()
    assert ids.GENERATED_ID.fullmatch(agent_id)
    assert agent_id.startswith("ag_")
    assert names.agent_name(ORG, agent_id) == f"organizations/org_a/agents/{agent_id}"
    assert names.parse_agent_name(names.agent_name(ORG, agent_id)) == (ORG, agent_id)
    assert names.parse_version_name(names.version_name(ORG, "sales-bot", 12)) == (ORG, "sales-bot", 12)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "agents/sales-bot",
        "organizations/org_a/agents/",
        "organizations/org_a/agents/ab",
        "organizations/org_a/voices/sales-bot",
        "organizations/org_a/agents/sales-bot/x",
        "organizations/-/agents/sales-bot",
        "sales-bot",
    ],
)
def test_malformed_agent_names_are_invalid(name):
    with pytest.raises(InvalidArgument) as caught:
        names.parse_agent_name(name, field="parent")
    assert set(caught.value.field_violations) == {"parent"}


@pytest.mark.parametrize(
    "name",
    [
        "organizations/org_a/agents/sales-bot",
        "agents/sales-bot/versions/1",
        "organizations/org_a/agents/sales-bot/versions/0",
        "organizations/org_a/agents/sales-bot/versions/01",
        "organizations/org_a/agents/sales-bot/v/1",
    ],
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
        agent_pb2.AgentConfig(voicemail_action=agent_pb2.VOICEMAIL_ACTION_LEAVE_MESSAGE, model_temperature=5), ORG
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
        ready_config(prompt="", script="organizations/org_a/scripts/s1"),
        ready_config(prompt="", flow="organizations/org_a/flows/f1"),
        ready_config(first_message="", first_message_mode=agent_pb2.FIRST_MESSAGE_MODE_CALLER_SPEAKS_FIRST),
    ],
)
def test_complete_drafts_can_be_published(config):
    assert publish_blockers(config, ORG) == {}


def test_publishing_numbers_versions_and_refuses_repeats():
    assert plan_publish(DRAFT, ready_config(), ORG, 0, None) == 1
    assert plan_publish(PUBLISHED, ready_config(prompt="New pitch."), ORG, 3, ready_config()) == 4
    with pytest.raises(FailedPrecondition, match=r"^nothing changed since version 3$"):
        plan_publish(PUBLISHED, ready_config(), ORG, 3, ready_config())
    with pytest.raises(FailedPrecondition, match="archived"):
        plan_publish(ARCHIVED, ready_config(prompt="x"), ORG, 3, ready_config())
    with pytest.raises(FailedPrecondition, match=r"not ready for calls: draft\.language_code is required") as raised:
        plan_publish(DRAFT, ready_config(language_code=""), ORG, 0, None)
    assert raised.value.error_info is not None and raised.value.error_info.reason == "DRAFT_NOT_READY"
