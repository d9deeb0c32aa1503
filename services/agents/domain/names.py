"""Resource names and ids: ``agents/{agent}`` and ``agents/{agent}/versions/{version}``.

An agent id is either chosen by the caller (4 to 63 characters of ``[a-z0-9-]``,
starting with a letter) or generated (``ag_`` and 16 random base32 characters). The
underscore keeps the two apart: a chosen id can never collide with a generated one.
"""

from __future__ import annotations

import base64
import re
import secrets

from mesh.errors import InvalidArgument

COLLECTION = "agents"

CHOSEN_ID = re.compile(r"^[a-z][a-z0-9-]{3,62}$")
GENERATED_ID = re.compile(r"^ag_[a-z2-7]{16}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")


def new_agent_id() -> str:
    """A fresh generated agent id (``ag_`` + 80 random bits in lowercase base32)."""
    return "ag_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


def chosen_id_violation(agent_id: str) -> str | None:
    """Why a caller-chosen agent id is unacceptable, or ``None`` when it is fine."""
    if CHOSEN_ID.fullmatch(agent_id):
        return None
    return "must be 4 to 63 characters of lowercase letters, digits and hyphens, starting with a letter"


def agent_name(agent_id: str) -> str:
    """``agents/{agent_id}``."""
    return f"{COLLECTION}/{agent_id}"


def version_name(agent_id: str, version: int) -> str:
    """``agents/{agent_id}/versions/{version}``."""
    return f"{COLLECTION}/{agent_id}/versions/{version}"


def parse_agent_name(name: str, *, field: str = "name") -> str:
    """The agent id in ``agents/{agent}``.

    Raises:
        InvalidArgument: the name is empty or has another shape; the violation names ``field``.

    """
    collection, _, agent_id = name.partition("/")
    if collection != COLLECTION or not _is_agent_id(agent_id):
        raise InvalidArgument(
            f"{field} must look like agents/{{agent}}", {field: _shape_problem(name, "agents/{agent}")}
        )
    return agent_id


def parse_version_name(name: str, *, field: str = "name") -> tuple[str, int]:
    """The agent id and version number in ``agents/{agent}/versions/{version}``.

    Raises:
        InvalidArgument: the name is empty or has another shape; the violation names ``field``.

    """
    parts = name.split("/")
    pattern = "agents/{agent}/versions/{version}"
    if (
        len(parts) != 4
        or parts[0] != COLLECTION
        or parts[2] != "versions"
        or not _is_agent_id(parts[1])
        or not _VERSION.fullmatch(parts[3])
    ):
        raise InvalidArgument(f"{field} must look like {pattern}", {field: _shape_problem(name, pattern)})
    return parts[1], int(parts[3])


def _is_agent_id(candidate: str) -> bool:
    return bool(CHOSEN_ID.fullmatch(candidate) or GENERATED_ID.fullmatch(candidate))


def _shape_problem(name: str, pattern: str) -> str:
    return "is required" if not name else f"must look like {pattern}"
