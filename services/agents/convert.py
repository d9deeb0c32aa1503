"""Protobuf messages ↔ rows, and the JSON form of configurations stored in rows."""

from __future__ import annotations

import datetime

from google.protobuf import json_format

from mesh.kit.sql import timestamp
from services.agents.domain import names
from services.agents.domain.lifecycle import AgentState
from services.agents.models import AgentRow, AgentVersionRow
from vocelio.agents.v1 import agent_pb2
from vocelio.common.v1 import audit_pb2

_STATES = {
    AgentState.DRAFT: agent_pb2.AGENT_STATE_DRAFT,
    AgentState.PUBLISHED: agent_pb2.AGENT_STATE_PUBLISHED,
    AgentState.ARCHIVED: agent_pb2.AGENT_STATE_ARCHIVED,
}


def agent_to_proto(row: AgentRow) -> agent_pb2.Agent:
    """The ``Agent`` resource of a row, etag included."""
    name = names.agent_name(row.organization_id, row.id)
    return agent_pb2.Agent(
        name=name,
        organization_id=row.organization_id,
        display_name=row.display_name,
        description=row.description,
        state=_STATES[row.state],
        draft=config_from_json(row.draft),
        latest_version=row.latest_version,
        pinned_version=row.pinned_version,
        labels=row.labels,
        audit=row.audit_info(),
        etag=row.etag_for(name),
    )


def new_agent_row(
    agent_id: str,
    organization_id: str,
    agent: agent_pb2.Agent,
    draft: agent_pb2.AgentConfig,
    creator: str,
    now: datetime.datetime,
) -> AgentRow:
    """A new DRAFT agent from the caller-settable fields of ``agent``, with ``draft`` as its draft."""
    row = AgentRow(
        id=agent_id,
        organization_id=organization_id,
        display_name=agent.display_name,
        description=agent.description,
        labels=dict(agent.labels),
        draft=config_to_json(draft),
        state=AgentState.DRAFT,
        latest_version=0,
        pinned_version=0,
    )
    row.stamp_created(creator, now)
    return row


def version_to_proto(row: AgentVersionRow) -> agent_pb2.AgentVersion:
    """The ``AgentVersion`` resource of a row."""
    created = timestamp(row.create_time)
    return agent_pb2.AgentVersion(
        name=names.version_name(row.organization_id, row.agent_id, row.version),
        version=row.version,
        config=config_from_json(row.config),
        change_note=row.change_note,
        audit=audit_pb2.AuditInfo(
            create_time=created, update_time=created, creator=row.creator, last_modifier=row.creator
        ),
    )


def copy_mutable_fields(agent: agent_pb2.Agent, row: AgentRow) -> None:
    """Write the caller-settable fields of ``agent`` into ``row`` (assigning, so changes are tracked)."""
    row.display_name = agent.display_name
    row.description = agent.description
    row.labels = dict(agent.labels)
    row.draft = config_to_json(agent.draft)


def config_to_json(config: agent_pb2.AgentConfig) -> str:
    """The stored form of a configuration: compact protobuf JSON with stable key order."""
    return json_format.MessageToJson(config, preserving_proto_field_name=True, sort_keys=True, indent=None)


def config_from_json(text: str) -> agent_pb2.AgentConfig:
    """A configuration from its stored form."""
    return json_format.Parse(text, agent_pb2.AgentConfig())
