"""Signing key names carry RFC 7638 thumbprints, which may start with "-" or "_" (2 kids in 64)."""

from __future__ import annotations

import pytest

from mesh.errors import InvalidArgument
from services.identity.security import signing_key_id


@pytest.mark.parametrize("kid", ["-Yc0k7m5f3JqX_2bN8sLwZtR9vUaE1dG4hK6oP3iQwA", "_abc", "Abc-_9"])
def test_a_thumbprint_kid_is_read_whatever_its_first_character(kid: str) -> None:
    assert signing_key_id(f"signing_keys/{kid}") == kid


@pytest.mark.parametrize("name", ["", "signing_keys/", "keys/abc", "signing_keys/a/b", "signing_keys/a b", "abc"])
def test_other_shapes_are_invalid_arguments_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        signing_key_id(name)
    assert caught.value.field_violations == {
        "name": "is required" if not name else "must look like signing_keys/{signing_key}"
    }
