"""Team hub's field rules: text, display names, e-mail addresses, country codes, labels."""

from __future__ import annotations

import re
from collections.abc import Mapping

from mesh.errors import InvalidArgument
from mesh.kit.filtering import LABEL_KEY
from mesh.kit.validation import text_problem

MAX_DISPLAY_NAME = 100
MAX_EMAIL = 254
MAX_LABELS = 64
MAX_LABEL_VALUE = 63

# Deliberately loose (RFC 5321 allows far more); identity owns real address checks.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def text(value: str, field: str, *, limit: int, required: bool = False, multiline: bool = False) -> str:
    """Free text, stripped, checked by the kit's one text rule (present, short enough, no control characters).

    Raises:
        InvalidArgument: naming ``field``.

    """
    stripped = value.strip()
    problem = text_problem(stripped, limit=limit, required=required, multiline=multiline)
    if problem is not None:
        raise InvalidArgument(f"{field} {problem}", {field: problem})
    return stripped


def display_name(value: str, field: str) -> str:
    """A display name, stripped: 1 to 100 characters, no control characters.

    Raises:
        InvalidArgument: empty, too long or with control characters.

    """
    return text(value, field, limit=MAX_DISPLAY_NAME, required=True)


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
        if not LABEL_KEY.fullmatch(key):
            raise InvalidArgument("invalid label key", {f"{field}[{key}]": "lower-case letter, then [a-z0-9_-]{0,62}"})
        if len(value) > MAX_LABEL_VALUE or any(ord(c) < 32 for c in value):
            raise InvalidArgument(
                "invalid label value", {f"{field}[{key}]": f"at most {MAX_LABEL_VALUE} printable characters"}
            )
    return dict(sorted(values.items()))
