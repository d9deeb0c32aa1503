"""The suite's own guards: a hung test fails fast with its name and a stack; a leaked task fails its test.

Each case runs pytest in a subprocess on a small test file written here, with this
project's configuration (rootdir, conftest, plugins), and reads what pytest printed.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_pytest(tmp_dir: pathlib.Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one generated test file under the project's configuration; returns the finished process."""
    target = tmp_dir / "test_generated_case.py"
    target.write_text(textwrap.dedent(source))
    # The file lives under tests/ so the project's conftest (and its guards) applies to it.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(target.relative_to(ROOT)), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def scratch() -> Iterator[pathlib.Path]:
    directory = ROOT / "tests" / "suite" / f"_scratch_{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    (directory / "__init__.py").touch()
    yield directory
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()


def test_a_test_that_hangs_in_await_fails_with_its_name_and_stack_within_the_ceiling(scratch):
    finished = run_pytest(
        scratch,
        """
        import asyncio

        async def test_waits_for_ever():
            await asyncio.Event().wait()
        """,
        "--timeout=3",
    )
    assert finished.returncode == 1, finished.stdout
    assert "test_waits_for_ever" in finished.stdout
    assert "Timeout" in finished.stdout
    assert "test_generated_case.py" in finished.stdout  # the stack points at the hung line


def test_a_test_that_blocks_the_thread_fails_with_its_name_and_stack_within_the_ceiling(scratch):
    finished = run_pytest(
        scratch,
        """
        import threading

        def test_blocks_for_ever():
            threading.Event().wait()
        """,
        "--timeout=3",
    )
    assert finished.returncode == 1, finished.stdout
    assert "test_blocks_for_ever" in finished.stdout
    assert "Timeout" in finished.stdout
    assert "threading.Event().wait()" in finished.stdout


def test_a_fixture_whose_teardown_hangs_fails_too(scratch):
    finished = run_pytest(
        scratch,
        """
        import asyncio
        import pytest

        @pytest.fixture
        async def stuck():
            yield
            await asyncio.Event().wait()

        async def test_uses_a_stuck_fixture(stuck):
            pass
        """,
        "--timeout=3",
    )
    assert finished.returncode == 1, finished.stdout
    # The ceiling interrupts the finalizer; the stuck finalizer is then named as a leftover task.
    assert "ERROR at teardown of test_uses_a_stuck_fixture" in finished.stdout
    assert "async_finalizer" in finished.stdout


def test_a_task_left_running_fails_its_test_with_the_tasks_name(scratch):
    finished = run_pytest(
        scratch,
        """
        import asyncio

        async def test_leaks_a_task():
            asyncio.create_task(asyncio.Event().wait(), name="forgotten-watcher")
        """,
    )
    assert finished.returncode == 1, finished.stdout
    assert "test_leaks_a_task" in finished.stdout
    assert "forgotten-watcher" in finished.stdout
    assert "still running after the test" in finished.stdout


def test_a_task_that_finishes_with_the_test_passes(scratch):
    finished = run_pytest(
        scratch,
        """
        import asyncio

        async def test_cleans_up():
            task = asyncio.create_task(asyncio.sleep(0.01), name="short")
            await task
        """,
    )
    assert finished.returncode == 0, finished.stdout
