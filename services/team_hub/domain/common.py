"""Shared rules: resource names and ids, idempotency keys, display names, e-mail addresses, labels, etags."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping

from mesh.errors import Aborted, InvalidArgument

MAX_DISPLAY_NAME = 100
MAX_EMAIL = 254
MAX_LABELS = 64
MAX_LABEL_VALUE = 63
ORGANIZATIONS = "organizations"
# AIP-159: ``organizations/-`` in a parent means every organisation.
EVERY_ORGANIZATION = "-"

_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,61}[a-z0-9]$")
_ANY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Deliberately loose (RFC 5321 allows far more); identity owns real address checks.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def new_id(prefix: str) -> str:
    """A generated id: ``prefix`` + ``_`` + 16 lower-case hex characters."""
    return f"{prefix}_{secrets.token_hex(8)}"


def resource_name(collection: str, resource_id: str) -> str:
    """``collection/id`` (a platform-global name such as ``organizations/acme``)."""
    return f"{collection}/{resource_id}"


def organization_name(organization_id: str) -> str:
    """``organizations/{organization}``."""
    return f"{ORGANIZATIONS}/{organization_id}"


def child_name(organization_id: str, collection: str, resource_id: str) -> str:
    """``organizations/{organization}/{collection}/{id}``."""
    return f"{ORGANIZATIONS}/{organization_id}/{collection}/{resource_id}"


def parse_name(name: str, collection: str, field: str = "name") -> str:
    """The id in a platform-global ``collection/{id}``.

    Raises:
        InvalidArgument: not a name of that collection.

    """
    prefix, _, resource_id = name.partition("/")
    if prefix != collection or not _ANY_ID.match(resource_id):
        raise InvalidArgument(f"expected a name like {collection}/abc", {field: f"must look like {collection}/{{id}}"})
    return resource_id


def parse_child(name: str, collection: str, field: str = "name") -> tuple[str, str]:
    """The organisation and the id in ``organizations/{organization}/{collection}/{id}``.

    Raises:
        InvalidArgument: not a name of that collection (``organizations/-`` included: a
            single resource is always named in its own organisation).

    """
    parts = name.split("/")
    if (
        len(parts) != 4
        or parts[0] != ORGANIZATIONS
        or parts[2] != collection
        or not _ANY_ID.match(parts[1])
        or not _ANY_ID.match(parts[3])
    ):
        shape = f"organizations/{{organization}}/{collection}/{{id}}"
        raise InvalidArgument(f"{field} must look like {shape}", {field: f"must look like {shape}"})
    return parts[1], parts[3]


def parse_parent(parent: str, field: str = "parent") -> str:
    """The organisation id in ``organizations/{organization}`` (``-`` for every organisation).

    Raises:
        InvalidArgument: not an organisation name.

    """
    prefix, _, organization_id = parent.partition("/")
    if prefix != ORGANIZATIONS or not (organization_id == EVERY_ORGANIZATION or _ANY_ID.match(organization_id)):
        problem = "is required" if not parent else "must look like organizations/{organization}"
        raise InvalidArgument(f"{field} {problem}", {field: problem})
    return organization_id


def request_id(value: str, field: str = "request_id") -> str:
    """An idempotency key (AIP-155): a UUID4 in its canonical form, or ``""``.

    Raises:
        InvalidArgument: not a UUID4.

    """
    if not value:
        return ""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.version != 4 or str(parsed) != value.lower():
        raise InvalidArgument(f"{field} must be a UUID4", {field: "a UUID4, generated once per logical request"})
    return str(parsed)


def client_chosen_id(value: str, field: str) -> str | None:
    """A caller-chosen id (4 to 63 characters of ``[a-z0-9-]``), or ``None`` when empty.

    Raises:
        InvalidArgument: malformed.

    """
    if not value:
        return None
    if not _CLIENT_ID.match(value):
        raise InvalidArgument(
            f"invalid {field}", {field: "4 to 63 characters of a-z, 0-9 and -, not starting or ending with -"}
        )
    return value


def display_name(value: str, field: str) -> str:
    """A display name, stripped: 1 to 100 characters, no control characters.

    Raises:
        InvalidArgument: empty, too long or with control characters.

    """
    name = value.strip()
    if not name:
        raise InvalidArgument("a display name is required", {field: "required"})
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidArgument("display name too long", {field: f"at most {MAX_DISPLAY_NAME} characters"})
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument("display name contains control characters", {field: "no control characters"})
    return name


def email(value: str, field: str, *, required: bool = True) -> str:
    """An e-mail address, stripped and lower case (``""`` if optional and empty).

    Raises:
        InvalidArgument: missing, too long or not shaped like an address.

    """
    address = value.strip().lower()
    if not address:
        if required:
            raise InvalidArgument("an e-mail address is required", {field: "required"})
        return ""
    if len(address) > MAX_EMAIL or not _EMAIL.match(address):
        raise InvalidArgument("invalid e-mail address", {field: f"an e-mail address of at most {MAX_EMAIL} characters"})
    return address


def country_code(value: str, field: str) -> str:
    """An ISO 3166-1 alpha-2 code in upper case, or ``""``.

    Raises:
        InvalidArgument: not two letters.

    """
    code = value.strip().upper()
    if code and not _COUNTRY.match(code):
        raise InvalidArgument("invalid country code", {field: "two letters, ISO 3166-1 alpha-2 (US)"})
    return code


def labels(values: Mapping[str, str], field: str) -> dict[str, str]:
    """Labels: at most 64, keys like ``segment``, values up to 63 characters.

    Raises:
        InvalidArgument: a bad key or value, or too many.

    """
    if len(values) > MAX_LABELS:
        raise InvalidArgument("too many labels", {field: f"at most {MAX_LABELS}"})
    for key, value in values.items():
        if not _LABEL_KEY.match(key):
            raise InvalidArgument("invalid label key", {f"{field}[{key}]": "lower-case letter, then [a-z0-9_-]{0,62}"})
        if len(value) > MAX_LABEL_VALUE or any(ord(c) < 32 for c in value):
            raise InvalidArgument(
                "invalid label value", {f"{field}[{key}]": f"at most {MAX_LABEL_VALUE} printable characters"}
            )
    return dict(sorted(values.items()))


def etag(name: str, version: int) -> str:
    """The opaque etag of one version of the resource called ``name``."""
    return hashlib.sha256(f"{name}:{version}".encode()).hexdigest()[:16]


def check_etag(given: str, name: str, version: int) -> None:
    """Nothing when ``given`` is empty or current.

    Raises:
        Aborted: someone changed the resource since the caller read it.

    """
    if given and given != etag(name, version):
        raise Aborted("the resource changed since it was read (etag mismatch); read it again and retry")


def update_paths(
    paths: list[str], allowed: frozenset[str], populated: set[str], field: str = "update_mask"
) -> set[str]:
    """The fields an update changes: the mask's, all ``allowed`` for ``*``, or the populated ones.

    Raises:
        InvalidArgument: a path that is not an updatable field.

    """
    if not paths:
        return populated & allowed
    if "*" in paths:
        if len(paths) > 1:
            raise InvalidArgument("* stands alone in an update mask", {field: "* must be the only path"})
        return set(allowed)
    unknown = sorted(p for p in paths if p not in allowed)
    if unknown:
        raise InvalidArgument(
            f"cannot update {', '.join(unknown)}", {field: f"updatable fields: {', '.join(sorted(allowed))}"}
        )
    return set(paths)
