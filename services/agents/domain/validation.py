"""What a valid agent looks like, field by field.

Every check reports into one ``{field path: problem}`` dictionary, so a request with
three bad fields hears about all three at once (``google.rpc.BadRequest``, via
:func:`mesh.kit.validation.require_valid`). Paths are relative to the ``Agent``
(``display_name``, ``draft.voice``) unless a function says otherwise.

A draft may be incomplete (no voice yet, no language yet): these checks say whether
each value that *is* there is acceptable. Whether the draft is complete enough to take
calls is :func:`services.agents.domain.lifecycle.publish_blockers`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.api import resource_pb2
from google.protobuf import duration_pb2, message
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from mesh.errors import InvalidArgument
from mesh.kit import ids
from mesh.kit.idempotency import request_id_problem
from mesh.kit.names import ResourceName
from mesh.kit.validation import map_key_path, require_valid, text_problem
from vocelio.agents.v1 import agent_pb2, agents_service_pb2
from vocelio.flow_builder.v1 import flow_pb2
from vocelio.scripts.v1 import script_pb2
from vocelio.voice_marketplace.v1 import voice_pb2

DISPLAY_NAME_MAX = 100
DESCRIPTION_MAX = 2_000
PROMPT_MAX = 32_000
MESSAGE_MAX = 1_000
END_CALL_PHRASES_MAX = 20
END_CALL_PHRASE_MAX = 100
LABELS_MAX = 64
DEFAULT_VARIABLES_MAX = 50
VARIABLE_VALUE_MAX = 1_000
CHANGE_NOTE_MAX = 1_000

MIN_CALL_DURATION_SECONDS = 60
MAX_CALL_DURATION_SECONDS = 2 * 60 * 60
DEFAULT_CALL_DURATION_SECONDS = 10 * 60
MIN_SILENCE_SECONDS = 10

TEMPERATURE_RANGE = (0.0, 2.0)
INTERRUPTION_SENSITIVITY_RANGE = (0.0, 1.0)

# Same rules as Google Cloud labels: safe in filters, URLs and JSON paths.
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# BCP-47: language, optional script, optional region, optional variants ("en-US", "zh-Hant-TW").
LANGUAGE_TAG = re.compile(
    r"^[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*$"
)


_RESOURCE: Any = resource_pb2.resource


def _patterns(message_class: type[message.Message]) -> tuple[ResourceName, ...]:
    descriptor: Any = message_class.DESCRIPTOR
    count = len(descriptor.GetOptions().Extensions[_RESOURCE].pattern)
    return tuple(ResourceName.for_message(message_class, index) for index in range(count))


# Fields that refer to other services' resources, and the names each may hold (from their contracts).
REFERENCES: Mapping[str, tuple[ResourceName, ...]] = {
    "voice": _patterns(voice_pb2.Voice),
    "fallback_voice": _patterns(voice_pb2.Voice),
    "script": _patterns(script_pb2.Script),
    "flow": _patterns(flow_pb2.Flow),
}

Violations = dict[str, str]


def create_violations(request: agents_service_pb2.CreateAgentRequest, organization_id: str) -> Violations:
    """Problems with a ``CreateAgent`` request, as paths into the request (``agent.display_name``)."""
    violations = {
        f"agent.{path}": problem for path, problem in agent_violations(request.agent, organization_id).items()
    }
    if request.agent_id and (problem := ids.chosen_id_problem(request.agent_id)):
        violations["agent_id"] = problem
    if problem := request_id_problem(request.request_id):
        violations["request_id"] = problem
    return violations


def require_valid_agent(violations: Mapping[str, str], *, prefix: str = "agent.") -> None:
    """Raise one INVALID_ARGUMENT naming every bad field of an agent, paths prefixed with ``prefix``.

    Raises:
        InvalidArgument: with a field violation per bad field.

    """
    require_valid({f"{prefix}{path}": problem for path, problem in violations.items()})


def agent_violations(agent: agent_pb2.Agent, organization_id: str) -> Violations:
    """Problems with an agent's caller-settable fields (display name, description, labels, draft)."""
    violations: Violations = {}
    if problem := text_problem(agent.display_name, limit=DISPLAY_NAME_MAX, required=True):
        violations["display_name"] = problem
    _check_text(violations, "description", agent.description, DESCRIPTION_MAX, multiline=True)
    violations.update(label_violations(agent.labels))
    violations.update(config_violations(agent.draft, organization_id, prefix="draft."))
    return violations


def label_violations(labels: Mapping[str, str]) -> Violations:
    """Problems with labels: at most 64, keys and values as for Google Cloud labels."""
    violations: Violations = {}
    if len(labels) > LABELS_MAX:
        violations["labels"] = f"must have at most {LABELS_MAX} entries"
    for key, value in sorted(labels.items()):
        path = map_key_path("labels", key)
        if not LABEL_KEY.fullmatch(key):
            violations[path] = (
                "key must be 1 to 63 characters of lowercase letters, digits, '_' and '-', starting with a letter"
            )
        elif not LABEL_VALUE.fullmatch(value):
            violations[path] = "value must be at most 63 characters of lowercase letters, digits, '_' and '-'"
    return violations


def config_violations(config: agent_pb2.AgentConfig, organization_id: str, *, prefix: str = "") -> Violations:
    """Problems with the values present in an agent configuration (references stay in ``organization_id``)."""
    violations: Violations = {}
    for field, patterns in REFERENCES.items():
        value = getattr(config, field)
        if value and (problem := _reference_problem(value, patterns, organization_id)):
            violations[field] = problem
    if config.voice and config.fallback_voice == config.voice:
        violations["fallback_voice"] = "must differ from voice"
    if config.language_code and not LANGUAGE_TAG.fullmatch(config.language_code):
        violations["language_code"] = 'must be a BCP-47 language tag such as "en-US"'
    _check_text(violations, "prompt", config.prompt, PROMPT_MAX, multiline=True)
    _check_text(violations, "first_message", config.first_message, MESSAGE_MAX)
    _check_text(violations, "end_call_message", config.end_call_message, MESSAGE_MAX)
    _check_text(violations, "voicemail_message", config.voicemail_message, MESSAGE_MAX)
    _check_enum(violations, "first_message_mode", config.first_message_mode, agent_pb2.FirstMessageMode)
    _check_enum(violations, "voicemail_action", config.voicemail_action, agent_pb2.VoicemailAction)
    violations.update(_phrase_violations(config.end_call_phrases))
    if config.HasField("max_call_duration"):
        problem = _duration_problem(
            config.max_call_duration, MIN_CALL_DURATION_SECONDS, MAX_CALL_DURATION_SECONDS, "1 minute", "2 hours"
        )
        if problem:
            violations["max_call_duration"] = problem
    if config.HasField("end_call_after_silence"):
        problem = _duration_problem(
            config.end_call_after_silence, MIN_SILENCE_SECONDS, MAX_CALL_DURATION_SECONDS, "10 seconds", "2 hours"
        )
        if problem:
            violations["end_call_after_silence"] = problem
    _check_range(violations, "model_temperature", config.model_temperature, TEMPERATURE_RANGE)
    _check_range(
        violations, "interruption_sensitivity", config.interruption_sensitivity, INTERRUPTION_SENSITIVITY_RANGE
    )
    violations.update(_variable_violations(config.default_variables))
    return {f"{prefix}{path}": problem for path, problem in violations.items()}


def with_defaults(config: agent_pb2.AgentConfig) -> agent_pb2.AgentConfig:
    """A copy of ``config`` with server defaults filled in (a 10-minute call limit when unset)."""
    completed = agent_pb2.AgentConfig()
    completed.CopyFrom(config)
    if not completed.HasField("max_call_duration"):
        completed.max_call_duration.seconds = DEFAULT_CALL_DURATION_SECONDS
    return completed


def publish_violations(request: agents_service_pb2.PublishAgentRequest) -> Violations:
    """Problems with a ``PublishAgent`` request (its change note and request_id)."""
    violations: Violations = {}
    _check_text(violations, "change_note", request.change_note, CHANGE_NOTE_MAX, multiline=True)
    if problem := request_id_problem(request.request_id):
        violations["request_id"] = problem
    return violations


def _reference_problem(value: str, patterns: Sequence[ResourceName], organization_id: str) -> str | None:
    for pattern in patterns:
        try:
            parsed = pattern.parse(value)
        except InvalidArgument:
            continue
        if pattern.is_organization_scoped and parsed.organization != organization_id:
            return "must belong to the agent's organisation"
        return None
    return "must be a resource name like " + " or ".join(pattern.pattern for pattern in patterns)


def _check_text(violations: Violations, field: str, value: str, limit: int, *, multiline: bool = False) -> None:
    if (problem := text_problem(value, limit=limit, multiline=multiline)) is not None:
        violations[field] = problem


def _check_enum(violations: Violations, field: str, value: int, enum: EnumTypeWrapper) -> None:
    # Proto3 enums are open: a client can send a number this release does not know.
    if value not in enum.values():
        violations[field] = f"{value} is not a known value"


def _check_range(violations: Violations, field: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not math.isfinite(value) or not low <= value <= high:
        violations[field] = f"must be between {low:g} and {high:g}"


def _duration_problem(
    duration: duration_pb2.Duration, low: int, high: int, low_text: str, high_text: str
) -> str | None:
    if not -999_999_999 <= duration.nanos <= 999_999_999 or (duration.seconds * duration.nanos < 0):
        return "is not a valid duration"
    seconds = duration.seconds + duration.nanos / 1e9
    if not low <= seconds <= high:
        return f"must be between {low_text} and {high_text}"
    return None


def _phrase_violations(phrases: Sequence[str]) -> Violations:
    violations: Violations = {}
    if len(phrases) > END_CALL_PHRASES_MAX:
        violations["end_call_phrases"] = f"must have at most {END_CALL_PHRASES_MAX} entries"
    for index, phrase in enumerate(phrases):
        if not phrase.strip():
            violations[f"end_call_phrases[{index}]"] = "must not be blank"
        else:
            _check_text(violations, f"end_call_phrases[{index}]", phrase, END_CALL_PHRASE_MAX)
    return violations


def _variable_violations(variables: Mapping[str, str]) -> Violations:
    violations: Violations = {}
    if len(variables) > DEFAULT_VARIABLES_MAX:
        violations["default_variables"] = f"must have at most {DEFAULT_VARIABLES_MAX} entries"
    for name, value in sorted(variables.items()):
        path = map_key_path("default_variables", name)
        if not VARIABLE_NAME.fullmatch(name):
            violations[path] = "name must be 1 to 64 letters, digits and '_', not starting with a digit"
        elif (problem := text_problem(value, limit=VARIABLE_VALUE_MAX, multiline=True)) is not None:
            violations[path] = f"value {problem}"
    return violations
