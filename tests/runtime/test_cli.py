"""Start-up with a bad configuration fails fast, with a message naming the variable."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.processes import PYTHON, REPO, environment

BAD_URL = "postgresql://admin:s3cr3t-pw@db.example:notaport/vocelio"


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "runtime", "run"],
        ["-m", "runtime", "serve", "agents"],
        ["-m", "runtime", "migrate"],
        ["-m", "gateway_rest", "--mesh"],
    ],
    ids=["run", "serve", "migrate", "edge"],
)
def test_malformed_database_url_stops_start_up(command, tmp_path):
    result = subprocess.run(
        [PYTHON, *command],
        cwd=REPO,
        env=environment(VOCELIO_DATABASE_URL=BAD_URL, VOCELIO_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "configuration error: VOCELIO_DATABASE_URL: is not a database URL" in result.stderr
    assert "s3cr3t-pw" not in result.stderr + result.stdout
    assert not (tmp_path / "log").exists(), "nothing was started"


def test_unknown_service_is_named(tmp_path):
    result = subprocess.run(
        [PYTHON, "-m", "runtime", "serve", "nosuch"],
        cwd=REPO,
        env=environment(VOCELIO_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "unknown service(s): nosuch" in result.stderr
