"""Sign-in delays after failures: they grow and cap, bind only addresses that have not signed in to the
account, and behave byte for byte the same for an unknown address as for a real account.

Client addresses travel as the edge sends them, in ``x-forwarded-for`` with its proxy token (see :func:`from_address`).
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from mesh.config import Settings
from services.identity import app as identity_app
from services.identity.ratelimit import SignInThrottle
from tests.services.identity.conftest import (
    PASSWORD,
    Harness,
    error_info,
    identity_settings,
    oauth_error,
    pb,
    retry_info,
    start_harness,
)
from tests.support.mesh import running_services
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2_grpc, user_pb2

WRONG = "not the password, sorry"
OWNER = "198.51.100.20"
ATTACKER = "203.0.113.66"
STRANGER = "192.0.2.99"


def from_address(address: str, edge_token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that names the client's address the way the REST edge forwards it (with its token)."""
    return (("x-forwarded-for", address), ("x-vocelio-proxy-authorization", f"Bearer {edge_token}"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


# --- the delay itself (fake clock) -----------------------------------------------------------------------------------


def test_delays_start_after_the_free_failures_double_and_cap():
    clock = FakeClock()
    throttle = SignInThrottle(free_failures=4, first_delay=1.0, longest_delay=900.0, clock=clock)
    delays = []
    for _ in range(16):
        delays.append(throttle.failure("ada@example.com"))
        assert throttle.wait_time("ada@example.com") == delays[-1]
        clock.now += delays[-1]  # wait the delay out, then fail again
    assert delays == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
    assert throttle.delay_after(10_000) == 900


def test_the_delay_runs_out_and_a_success_or_an_unlock_forgets_the_failures():
    clock = FakeClock()
    throttle = SignInThrottle(free_failures=1, first_delay=10.0, clock=clock)
    throttle.failure("ada@example.com")
    assert throttle.failure("ada@example.com") == 10.0
    clock.now += 4
    assert throttle.wait_time("ada@example.com") == pytest.approx(6.0)
    assert throttle.wait_time("bob@example.com") == 0  # per account
    clock.now += 6
    assert throttle.wait_time("ada@example.com") == 0
    assert throttle.failure("ada@example.com") == 20.0  # the count survives the delay
    assert throttle.clear("ada@example.com") is True
    assert (throttle.failures("ada@example.com"), throttle.wait_time("ada@example.com")) == (0, 0)
    assert throttle.clear("ada@example.com") is False
    throttle.failure("ada@example.com")
    throttle.success("ada@example.com")
    assert throttle.failures("ada@example.com") == 0


def test_failures_are_forgotten_after_a_quiet_day_and_memory_is_bounded():
    clock = FakeClock()
    throttle = SignInThrottle(free_failures=0, forget_after=86_400.0, max_keys=3, clock=clock)
    throttle.failure("ada@example.com")
    clock.now += 86_401
    assert throttle.failures("ada@example.com") == 0
    for key in "abcde":
        throttle.failure(key)
    assert len(throttle) == 3


STOPPED = FakeClock()


# --- through a real identity server ----------------------------------------------------------------------------------


@pytest.fixture
async def slow_delays(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    """Identity with a first delay of a minute on a clock that stands still (:data:`STOPPED`), so no test
    depends on how fast the machine is."""
    monkeypatch.setattr(identity_app, "SIGN_IN_FIRST_DELAY", 60.0)
    monkeypatch.setattr(identity_app, "SIGN_IN_CLOCK", STOPPED)
    async for running in start_harness(identity_settings(sqlite_settings)):
        yield running


async def _grant(harness: Harness, email: str, password: str, address: str) -> pb.IssueTokenResponse:
    request = pb.IssueTokenRequest(grant_type="password", username=email, password=password)
    reply: pb.IssueTokenResponse = await harness.anonymous.IssueToken(request, metadata=await harness.via_edge(address))
    return reply


async def _failure(harness: Harness, email: str, password: str, address: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _grant(harness, email, password, address)
    return caught.value


def _shape(error: grpc.aio.AioRpcError) -> tuple[object, ...]:
    """Everything a caller sees of a failure: code, message and the serialized status details."""
    trailers: list[tuple[str, Any]] = list(error.trailing_metadata() or ())  # type: ignore[arg-type]
    return error.code(), error.details(), [value for key, value in trailers if key == "grpc-status-details-bin"]


async def test_an_outsider_failing_on_an_account_cannot_keep_its_owner_out(slow_delays: Harness):
    harness = slow_delays
    await harness.sign_up("ada@example.com")
    await _grant(harness, "ada@example.com", PASSWORD, OWNER)  # the owner's device has signed in before
    for _ in range(5):
        failed = await _failure(harness, "ada@example.com", WRONG, ATTACKER)
        assert oauth_error(failed) == "invalid_grant"
    # The attacker (and anyone else new) now waits, even with the right password ...
    for address, password in ((ATTACKER, WRONG), (STRANGER, PASSWORD)):
        held = await _failure(harness, "ada@example.com", password, address)
        assert held.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (error_info(held).reason, error_info(held).metadata["limit"]) == ("RATE_LIMITED", "per_account")
        assert retry_info(held).retry_delay.seconds == 60
    # ... while the owner, from the address they signed in from, gets in at once.
    tokens = await _grant(harness, "ada@example.com", PASSWORD, OWNER)
    assert tokens.access_token


async def test_an_unknown_address_is_delayed_exactly_like_a_real_account(slow_delays: Harness):
    harness = slow_delays
    await harness.sign_up("ada@example.com")
    real, ghost = [], []
    for _ in range(6):  # four free failures, the fifth starts the delay, the sixth meets it
        real.append(_shape(await _failure(harness, "ada@example.com", WRONG, ATTACKER)))
        ghost.append(_shape(await _failure(harness, "ghost@example.com", WRONG, ATTACKER)))
    assert real == ghost
    assert [shape[0] for shape in real] == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_through_the_server_the_delay_doubles_after_each_failure_that_waited_it_out(slow_delays: Harness):
    harness = slow_delays
    await harness.sign_up("ada@example.com")
    for _ in range(4):
        await _failure(harness, "ada@example.com", WRONG, ATTACKER)
    waits = []
    for _ in range(3):
        await _failure(harness, "ada@example.com", WRONG, ATTACKER)  # counted: it starts (or doubles) the delay
        held = await _failure(harness, "ada@example.com", WRONG, ATTACKER)  # not counted: it meets the delay
        waits.append(retry_info(held).retry_delay.seconds)
        STOPPED.now += waits[-1]
    assert waits == [60, 120, 240]


async def test_an_admin_unlock_lifts_the_delay_and_is_audited(slow_delays: Harness):
    harness = slow_delays
    await harness.sign_up("ada@example.com")
    for _ in range(5):
        await _failure(harness, "ada@example.com", WRONG, ATTACKER)
    assert (await _failure(harness, "ada@example.com", PASSWORD, STRANGER)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    admin = await harness.admin()
    users = (
        await admin.ListUsers(pb.ListUsersRequest(parent="organizations/-", filter='email = "ada@example.com"'))
    ).users
    assert users[0].failed_sign_in_count == 5 and users[0].state == user_pb2.USER_STATE_ACTIVE
    unlocked = await admin.UnlockUser(pb.UnlockUserRequest(name=users[0].name))
    assert unlocked.user.failed_sign_in_count == 0
    assert (await _grant(harness, "ada@example.com", PASSWORD, STRANGER)).access_token
    with pytest.raises(grpc.aio.AioRpcError) as again:  # nothing left to lift
        await admin.UnlockUser(pb.UnlockUserRequest(name=users[0].name))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    events = await admin.ListAuditEvents(pb.ListAuditEventsRequest(parent="organizations/org_1"))
    actions = [audit_event_pb2.AuditAction.Name(e.action) for e in events.audit_events]
    assert actions.count("AUDIT_ACTION_SIGN_IN_FAILED") == 5
    assert "AUDIT_ACTION_ACCOUNT_LOCKED" in actions and "AUDIT_ACTION_ACCOUNT_UNLOCKED" in actions


async def test_a_wrong_current_password_counts_and_the_delay_holds_change_password(slow_delays: Harness):
    harness = slow_delays
    _, tokens, _ = await harness.user("ada@example.com")
    me = harness.with_token(tokens.access_token)
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await me.ChangePassword(
                pb.ChangePasswordRequest(current_password=WRONG, new_password="a brand new passphrase"),
                metadata=await harness.via_edge(ATTACKER),
            )
        assert oauth_error(wrong.value) == "invalid_grant"
    with pytest.raises(grpc.aio.AioRpcError) as held:
        await me.ChangePassword(
            pb.ChangePasswordRequest(current_password=PASSWORD, new_password="a brand new passphrase"),
            metadata=await harness.via_edge(ATTACKER),
        )
    assert held.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- a real mesh: identity and team_hub, real tokens, real organisations -------------------------------------------


async def test_on_a_real_mesh_one_client_cannot_lock_another_out(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(identity_app, "SIGN_IN_FIRST_DELAY", 60.0)
    monkeypatch.setattr(identity_app, "SIGN_IN_CLOCK", FakeClock())  # stopped: retry delays compare exactly
    try:
        await _real_mesh_lockout(sqlite_settings)
    finally:
        # Stopping an in-process mesh can leave aiosqlite connections of cancelled calls to the garbage
        # collector (runtime's shutdown, not this test); collected later they would be reported as
        # unraisable in whichever unrelated test runs next, so they are collected here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def _real_mesh_lockout(sqlite_settings: Settings) -> None:
    async with (
        running_services(sqlite_settings, ["identity", "team_hub"]) as mesh,
        grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['identity']}") as channel,
    ):
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        edge = await stub.IssueToken(
            pb.IssueTokenRequest(
                grant_type="client_credentials",
                client_id="services/edge",
                client_secret=sqlite_settings.mesh_service_credential("edge"),
            ),
            timeout=30,
        )

        async def grant(email: str, password: str, address: str) -> pb.IssueTokenResponse:
            request = pb.IssueTokenRequest(grant_type="password", username=email, password=password)
            reply: pb.IssueTokenResponse = await stub.IssueToken(
                request, metadata=from_address(address, edge.access_token), timeout=30
            )
            return reply

        async def failure(email: str) -> grpc.aio.AioRpcError:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await grant(email, WRONG, ATTACKER)
            return caught.value

        signed_up = await stub.SignUp(
            pb.SignUpRequest(
                email="victim@example.com",
                password=PASSWORD,
                display_name="Victim",
                organization_display_name="Victim Co",
                terms_accepted=True,
            ),
            timeout=30,
        )
        assert signed_up.organization_id.startswith("org_")  # a real organisation, made by team_hub
        await grant("victim@example.com", PASSWORD, OWNER)
        # The attacker hammers the victim's account and a made-up one: the answers cannot tell them apart.
        real, ghost = [], []
        for _ in range(8):
            real.append(_shape(await failure("victim@example.com")))
            ghost.append(_shape(await failure("nobody@example.com")))
        assert real == ghost
        codes = [shape[0] for shape in real]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
        # The attacker is slowed down; the victim, from where they signed in before, is not.
        victim = await grant("victim@example.com", PASSWORD, OWNER)
        assert victim.organization_id == signed_up.organization_id and victim.refresh_token
