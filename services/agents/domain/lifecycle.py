"""The agent's state machine and the rules of publishing.

::

    DRAFT ──publish──► PUBLISHED ──archive──► ARCHIVED ──unarchive──► PUBLISHED
    DRAFT ──archive──► ARCHIVED ──unarchive──► DRAFT (if never published)

An archived agent takes no change except unarchiving (and deletion). Archiving an
archived agent and unarchiving a live one change nothing: both methods are idempotent.
The pinned version survives archiving.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from mesh.errors import ErrorReasons, FailedPrecondition
from services.agents.domain import validation
from vocelio.agents.v1 import agent_pb2, agents_errors_pb2

# The machine-readable reasons of agents' refusals (google.rpc.ErrorInfo, domain agents.vocelio.com).
REASONS = ErrorReasons(agents_errors_pb2.ErrorReason)


class AgentState(enum.StrEnum):
    """Where an agent is in its life (stored by name; ``AgentState`` in the contract)."""

    DRAFT = "DRAFT"
    PUBLISHED = "PUBLISHED"
    ARCHIVED = "ARCHIVED"


class Action(enum.StrEnum):
    """What a request does to an agent, as far as its state is concerned."""

    EDIT = "edit"  # UpdateAgent, RestoreAgentVersion
    PIN = "pin"  # PinAgentVersion
    PUBLISH = "publish"
    ARCHIVE = "archive"
    UNARCHIVE = "unarchive"


_DRAFT, _PUBLISHED, _ARCHIVED = AgentState.DRAFT, AgentState.PUBLISHED, AgentState.ARCHIVED

# Every legal move but one: unarchiving an archived agent depends on its history.
TRANSITIONS: Mapping[tuple[AgentState, Action], AgentState] = {
    (_DRAFT, Action.EDIT): _DRAFT,
    (_DRAFT, Action.PIN): _DRAFT,
    (_DRAFT, Action.PUBLISH): _PUBLISHED,
    (_DRAFT, Action.ARCHIVE): _ARCHIVED,
    (_DRAFT, Action.UNARCHIVE): _DRAFT,
    (_PUBLISHED, Action.EDIT): _PUBLISHED,
    (_PUBLISHED, Action.PIN): _PUBLISHED,
    (_PUBLISHED, Action.PUBLISH): _PUBLISHED,
    (_PUBLISHED, Action.ARCHIVE): _ARCHIVED,
    (_PUBLISHED, Action.UNARCHIVE): _PUBLISHED,
    (_ARCHIVED, Action.ARCHIVE): _ARCHIVED,
}

_REFUSED_WHILE_ARCHIVED = {
    Action.EDIT: "edit it",
    Action.PIN: "pin a version",
    Action.PUBLISH: "publish it",
}


def next_state(state: AgentState, action: Action, *, has_versions: bool) -> AgentState:
    """The state an agent moves to when ``action`` is applied.

    Args:
        state: the agent's current state.
        action: what the request does.
        has_versions: whether the agent was ever published (decides where unarchiving leads).

    Raises:
        FailedPrecondition: the agent is archived and the action needs a live agent.

    """
    if (state, action) == (_ARCHIVED, Action.UNARCHIVE):
        return _PUBLISHED if has_versions else _DRAFT
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise FailedPrecondition(
            f"the agent is archived: unarchive it before you {_REFUSED_WHILE_ARCHIVED[action]}"
        ).with_reason(REASONS, agents_errors_pb2.ERROR_REASON_AGENT_ARCHIVED) from None


def publish_blockers(draft: agent_pb2.AgentConfig, organization_id: str) -> dict[str, str]:
    """What keeps a draft of an agent of ``organization_id`` from taking calls (paths relative to the agent)."""
    blockers = validation.config_violations(draft, organization_id, prefix="draft.")
    if not draft.language_code:
        blockers["draft.language_code"] = "is required to publish"
    if not draft.voice:
        blockers["draft.voice"] = "is required to publish"
    if not (draft.prompt.strip() or draft.script or draft.flow):
        blockers["draft.prompt"] = "a prompt, a script or a flow is required to publish"
    speaks_first = (
        agent_pb2.FIRST_MESSAGE_MODE_UNSPECIFIED,
        agent_pb2.FIRST_MESSAGE_MODE_AGENT_SPEAKS_FIRST,
    )
    if draft.first_message_mode in speaks_first and not draft.first_message.strip():
        blockers["draft.first_message"] = "is required when the agent speaks first (or change first_message_mode)"
    if draft.voicemail_action == agent_pb2.VOICEMAIL_ACTION_LEAVE_MESSAGE and not draft.voicemail_message.strip():
        blockers["draft.voicemail_message"] = "is required when voicemail_action is LEAVE_MESSAGE"
    return blockers


def plan_publish(
    state: AgentState,
    draft: agent_pb2.AgentConfig,
    organization_id: str,
    latest_version: int,
    latest_config: agent_pb2.AgentConfig | None,
) -> int:
    """The number of the version that publishing ``draft`` creates.

    Args:
        state: the agent's state.
        draft: the draft to publish.
        organization_id: the agent's organisation (references must stay in it).
        latest_version: the highest published version (0 when never published).
        latest_config: that version's configuration (``None`` when never published).

    Raises:
        FailedPrecondition: the agent is archived, the draft cannot take calls (every
            reason listed), or it equals the latest version.

    """
    next_state(state, Action.PUBLISH, has_versions=latest_version > 0)
    blockers = publish_blockers(draft, organization_id)
    if blockers:
        reasons = "; ".join(f"{path} {problem}" for path, problem in sorted(blockers.items()))
        raise FailedPrecondition(f"the draft is not ready for calls: {reasons}").with_reason(
            REASONS, agents_errors_pb2.ERROR_REASON_DRAFT_NOT_READY
        )
    if latest_config is not None and latest_config == draft:
        raise FailedPrecondition(f"nothing changed since version {latest_version}").with_reason(
            REASONS, agents_errors_pb2.ERROR_REASON_NOTHING_TO_PUBLISH, {"latest_version": str(latest_version)}
        )
    return latest_version + 1
