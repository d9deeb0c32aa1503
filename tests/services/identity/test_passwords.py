"""Password hashing is bounded: a few argon2 computations at once, a bounded wait for a slot, and no
hashing of passwords longer than any password may be."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest
from argon2 import PasswordHasher
from google.rpc import code_pb2, error_details_pb2

from mesh.config import ConfigError, Settings
from mesh.errors import InvalidArgument
from services.identity.passwords import MAX_PASSWORD_BYTES, HashingBusy, Passwords, default_concurrency, too_long
from services.identity.servicer import rich_status
from tests.services.identity.conftest import PASSWORD, Harness, oauth_error, pb

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class GatedHasher(PasswordHasher):
    """A hasher whose hash waits for a gate, and which records how many run at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.gate = threading.Event()
        self.running = 0
        self.most = 0
        self.calls = 0
        self._lock = threading.Lock()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.gate.wait(30)
            return super().hash(password, salt=salt)
        finally:
            with self._lock:
                self.running -= 1

    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        with self._lock:
            self.calls += 1
        return super().verify(hash, password)


async def _until(check: Any) -> None:
    """Poll a condition another thread changes (no event to await across threads), for at most 10 s."""
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 - the condition is set by worker threads
            await asyncio.sleep(0.01)


async def test_at_most_the_configured_number_of_hashes_run_at_once():
    hasher = GatedHasher()
    passwords = Passwords(hasher, max_concurrency=2, max_wait=20)
    tasks = [asyncio.create_task(passwords.hash(f"password number {n}")) for n in range(6)]
    await _until(lambda: hasher.running == 2)
    hasher.gate.set()
    hashes = await asyncio.gather(*tasks)
    assert len(set(hashes)) == 6
    assert hasher.most == 2


async def test_a_saturated_cap_fails_after_the_bounded_wait_instead_of_queueing():
    hasher = GatedHasher()
    passwords = Passwords(hasher, max_concurrency=1, max_wait=0.2)
    busy = asyncio.create_task(passwords.hash("the first password"))
    await _until(lambda: hasher.running == 1)
    with pytest.raises(HashingBusy) as refused:
        await passwords.verify("$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$aGFzaA", "the second password")
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    hasher.gate.set()
    assert await busy
    # The slot is free again once the first hash is done.
    assert await passwords.verify(await passwords.hash("a third password"), "a third password")


def test_a_busy_cap_is_resource_exhausted_with_retry_info():
    status = rich_status(HashingBusy(1.0))
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    kinds = {detail.type_url.rsplit("/", 1)[1] for detail in status.details}
    assert {"google.rpc.RetryInfo", "google.rpc.ErrorInfo"} <= kinds
    info = error_details_pb2.ErrorInfo()
    next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
    assert (info.reason, info.metadata["limit"]) == ("RATE_LIMITED", "password_hashing")


async def test_a_too_long_password_is_never_hashed():
    hasher = GatedHasher()
    hasher.gate.set()
    passwords = Passwords(hasher)
    stored = await passwords.hash(PASSWORD)
    calls = hasher.calls
    huge = "x" * (MAX_PASSWORD_BYTES + 1)
    assert too_long(huge) and too_long("é" * 513) and not too_long("é" * 512) and not too_long("x" * 1024)
    assert await passwords.verify(stored, huge) is False
    await passwords.burn(huge)  # an unknown account with a huge password costs nothing either
    with pytest.raises(InvalidArgument):
        await passwords.hash(huge)
    assert hasher.calls == calls + 1  # only burn's dummy hash of a random password


def test_the_cap_comes_from_configuration():
    assert 2 <= default_concurrency() <= 8
    settings = Settings.from_environ({"VOCELIO_ARGON2_MAX_CONCURRENCY": "3", "VOCELIO_ARGON2_MAX_WAIT": "2.5"})
    assert (settings.argon2_max_concurrency, settings.argon2_max_wait) == (3, 2.5)
    assert Settings.from_environ({}).argon2_max_concurrency == 0  # automatic
    for variable, value in (("VOCELIO_ARGON2_MAX_CONCURRENCY", "-1"), ("VOCELIO_ARGON2_MAX_WAIT", "0")):
        with pytest.raises(ConfigError) as bad:
            Settings.from_environ({variable: value})
        assert bad.value.variable == variable


async def test_a_megabyte_password_is_just_a_failed_sign_in(harness: Harness):
    await harness.sign_up("ada@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await harness.password_grant("ada@example.com", "not the password at all")
    with pytest.raises(grpc.aio.AioRpcError) as huge:
        await harness.password_grant("ada@example.com", "p" * 1_000_000)
    assert huge.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert oauth_error(huge.value) == "invalid_grant"
    assert huge.value.details() == wrong.value.details()


async def test_every_path_that_sets_or_checks_a_password_caps_its_length(harness: Harness):
    with pytest.raises(grpc.aio.AioRpcError) as sign_up:
        await harness.sign_up("bob@example.com", password="long password " * 10)
    assert sign_up.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, _, me = await harness.user("ada@example.com")
    for request in (
        pb.ChangePasswordRequest(current_password=PASSWORD, new_password="n" + "ew password " * 11),
        pb.ChangePasswordRequest(current_password="p" * 257, new_password="a new password here"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as change:
            await me.ChangePassword(request)
        assert change.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as reset:
        await harness.anonymous.ResetPassword(
            pb.ResetPasswordRequest(reset_token="t", new_password="reset password " * 9)
        )
    assert reset.value.code() == grpc.StatusCode.INVALID_ARGUMENT
