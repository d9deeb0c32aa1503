"""Agent and version names, read from the contract's patterns (see :mod:`mesh.kit.names`).

``organizations/{organization}/agents/{agent}`` and
``organizations/{organization}/agents/{agent}/versions/{version}``. Agent ids follow the
kit's one id rule (:mod:`mesh.kit.ids`); generated ones start with ``ag_``.
"""

from __future__ import annotations

import re

from mesh.errors import InvalidArgument
from mesh.kit import ids
from mesh.kit.names import ResourceName
from vocelio.agents.v1 import agent_pb2

AGENTS = ResourceName.for_message(agent_pb2.Agent)
VERSIONS = ResourceName.for_message(agent_pb2.AgentVersion)
ID_PREFIX = "ag"

_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")


def new_agent_id() -> str:
    """A fresh generated agent id (``ag_`` + 80 random bits in lowercase base32)."""
    return ids.new_id(ID_PREFIX)


def agent_name(organization_id: str, agent_id: str) -> str:
    """``organizations/{organization_id}/agents/{agent_id}``."""
    return AGENTS.format(organization=organization_id, agent=agent_id)


def version_name(organization_id: str, agent_id: str, version: int) -> str:
    """``organizations/{organization_id}/agents/{agent_id}/versions/{version}``."""
    return VERSIONS.format(organization=organization_id, agent=agent_id, version=str(version))


def parse_agent_name(name: str, *, field: str = "name") -> tuple[str, str]:
    """The organisation and agent id in an agent name.

    Raises:
        InvalidArgument: the name is empty or has another shape; the violation names ``field``.

    """
    parsed = AGENTS.parse(name, field=field)
    if not ids.is_id(parsed["agent"]):
        raise _shape(field, AGENTS.pattern)
    return parsed.organization, parsed["agent"]


def parse_version_name(name: str, *, field: str = "name") -> tuple[str, str, int]:
    """The organisation, agent id and version number in a version name.

    Raises:
        InvalidArgument: the name is empty or has another shape; the violation names ``field``.

    """
    parsed = VERSIONS.parse(name, field=field)
    if not ids.is_id(parsed["agent"]) or not _VERSION.fullmatch(parsed["version"]):
        raise _shape(field, VERSIONS.pattern)
    return parsed.organization, parsed["agent"], int(parsed["version"])


def _shape(field: str, pattern: str) -> InvalidArgument:
    problem = f"must look like {pattern}"
    return InvalidArgument(f"{field} {problem}", {field: problem})
