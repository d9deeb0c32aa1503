"""The shared CRUD suite against agents and against a service built from the kit alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from mesh.config import Settings
from tests.support.crud_suite import CHECKS, TARGETS, CrudTarget, running
from tests.support.kit import KitService


@pytest.mark.parametrize("target", TARGETS, ids=[t.label for t in TARGETS])
@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
async def test_standard_resource_behaviour(
    settings: Settings, target: CrudTarget, check: Callable[[CrudTarget, KitService], Awaitable[None]]
):
    async with running(target, settings) as service:
        await check(target, service)
