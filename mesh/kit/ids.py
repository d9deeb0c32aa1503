"""One id rule for every resource (AIP-122).

A caller-chosen id is 3 to 63 characters of lowercase letters, digits and hyphens, starting
with a letter and not ending with a hyphen. A generated id is a short prefix, an underscore
and 16 random base32 characters (``ag_…``): the underscore keeps the two apart, so a chosen
id can never collide with a generated one.
"""

from __future__ import annotations

import base64
import re
import secrets

from mesh.errors import InvalidArgument

CHOSEN_ID = re.compile(r"^[a-z][a-z0-9-]{2,62}$")
GENERATED_ID = re.compile(r"^[a-z]{1,8}_[a-z2-7]{16}$")
CHOSEN_ID_RULE = "must be 3 to 63 characters of lowercase letters, digits and hyphens, starting with a letter"

_PREFIX = re.compile(r"^[a-z]{1,8}$")


def new_id(prefix: str) -> str:
    """A fresh generated id: ``{prefix}_`` and 80 random bits in lowercase base32.

    Raises:
        ValueError: the prefix is not 1 to 8 lowercase letters.

    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"an id prefix is 1 to 8 lowercase letters, not {prefix!r}")
    return f"{prefix}_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()


def chosen_id_problem(candidate: str) -> str | None:
    """Why a caller-chosen id is unacceptable, or ``None`` when it is fine."""
    return None if CHOSEN_ID.fullmatch(candidate) else CHOSEN_ID_RULE


def is_id(candidate: str) -> bool:
    """Whether ``candidate`` is a chosen or a generated id (the only ids a name may hold)."""
    return bool(CHOSEN_ID.fullmatch(candidate) or GENERATED_ID.fullmatch(candidate))


def require_chosen_id(candidate: str, *, field: str) -> str:
    """``candidate`` if it is an acceptable caller-chosen id.

    Raises:
        InvalidArgument: it is not, naming ``field``.

    """
    if (problem := chosen_id_problem(candidate)) is not None:
        raise InvalidArgument(f"{field} {problem}", {field: problem})
    return candidate


def chosen_or_new(candidate: str, prefix: str, *, field: str) -> str:
    """The caller's chosen id when one is given, otherwise a generated one.

    Raises:
        InvalidArgument: a chosen id breaks the rule.

    """
    return require_chosen_id(candidate, field=field) if candidate else new_id(prefix)
