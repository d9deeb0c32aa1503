"""Protobuf messages ↔ rows, and the JSON forms stored in rows and events."""

from __future__ import annotations

import datetime
import hashlib

from google.protobuf import json_format, message, timestamp_pb2

from services.agents.domain import etags, names
from services.agents.domain.lifecycle import AgentState
from services.agents.models import AgentRow, AgentVersionRow
from vocelio.agents.v1 import agent_pb2, agents_service_pb2
from vocelio.common.v1 import audit_pb2

_STATES = {
    AgentState.DRAFT: agent_pb2.AGENT_STATE_DRAFT,
    AgentState.PUBLISHED: agent_pb2.AGENT_STATE_PUBLISHED,
    AgentState.ARCHIVED: agent_pb2.AGENT_STATE_ARCHIVED,
}


def agent_to_proto(row: AgentRow) -> agent_pb2.Agent:
    """The ``Agent`` resource of a row, etag included."""
    return agent_pb2.Agent(
        name=names.agent_name(row.id),
        organization_id=row.organization_id,
        display_name=row.display_name,
        description=row.description,
        state=_STATES[row.state],
        draft=config_from_json(row.draft),
        latest_version=row.latest_version,
        pinned_version=row.pinned_version,
        labels=row.labels,
        audit=audit_pb2.AuditInfo(
            create_time=timestamp(row.create_time),
            update_time=timestamp(row.update_time),
            creator=row.creator,
            last_modifier=row.last_modifier,
        ),
        etag=etags.etag(row.id, row.create_time, row.revision),
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
    return AgentRow(
        id=agent_id,
        organization_id=organization_id,
        display_name=agent.display_name,
        description=agent.description,
        labels=dict(agent.labels),
        draft=config_to_json(draft),
        state=AgentState.DRAFT,
        latest_version=0,
        pinned_version=0,
        creator=creator,
        last_modifier=creator,
        create_time=now,
        update_time=now,
    )


def version_to_proto(row: AgentVersionRow) -> agent_pb2.AgentVersion:
    """The ``AgentVersion`` resource of a row."""
    created = timestamp(row.create_time)
    return agent_pb2.AgentVersion(
        name=names.version_name(row.agent_id, row.version),
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


def to_json_dict(resource: message.Message) -> dict[str, object]:
    """The proto3 JSON mapping of a message, as in the REST API (for event payloads)."""
    return json_format.MessageToDict(resource)


def timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    """A protobuf timestamp of an aware datetime."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def create_fingerprint(request: agents_service_pb2.CreateAgentRequest) -> str:
    """SHA-256 of a ``CreateAgent`` request without its request_id (deterministic serialisation)."""
    body = agents_service_pb2.CreateAgentRequest()
    body.CopyFrom(request)
    body.ClearField("request_id")
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()
