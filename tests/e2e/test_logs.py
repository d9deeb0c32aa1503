"""Logs of a real mesh process: JSON lines, one per RPC, one request id across services, no secrets.

The mesh runs as `python -m runtime serve --all --with-edge` with ``VOCELIO_LOG_FORMAT=json``
at INFO, its output in a file, as the supervisor's children write ``var/log/<name>.log``.
A user signs up and in with a password, creates an API key and lists agents with it:
agents verifies the key with developer_api, so that one REST request crosses two services.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import httpx
import pytest

from tests.support.processes import served_mesh

PASSWORD = "a password nobody may log 7Q"
EMAIL = "logs@example.com"
AGENTS = "vocelio.agents.v1.AgentsService"
DEVELOPER_API = "vocelio.developer_api.v1.DeveloperApiService"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: Any) -> Any:
    log_path = tmp_path_factory.mktemp("log") / "mesh.log"
    with (
        served_mesh(tmp_path_factory, log_path=log_path, VOCELIO_LOG_FORMAT="json", VOCELIO_LOG_LEVEL="INFO") as (
            base,
            _offset,
        ),
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        yield client, log_path


def _records(log_path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def _rpc_lines(
    log_path: pathlib.Path, request_id: str, services: set[str], limit: float = 10.0
) -> list[dict[str, Any]]:
    """The RPC lines of ``request_id``, once every one of ``services`` has written one (a bound, not a measurement)."""
    deadline = time.monotonic() + limit
    while True:
        lines = [
            r for r in _records(log_path) if r.get("logger") == "vocelio.rpc" and r.get("request_id") == request_id
        ]
        if services <= {line["service"] for line in lines} or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def _sign_in(client: httpx.Client) -> tuple[str, str, str]:
    body = {"email": EMAIL, "password": PASSWORD, "displayName": "logs", "termsAccepted": True}
    signed_up = client.post("/v1/auth/signup", json={**body, "organizationDisplayName": "Logs"})
    assert signed_up.status_code == 200, signed_up.text
    tokens = client.post("/v1/auth/token", json={"grant_type": "password", "username": EMAIL, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return signed_up.json()["organizationId"], tokens.json()["access_token"], tokens.json()["refresh_token"]


def test_one_request_id_in_every_service_and_no_secret_in_any_line(mesh: Any) -> None:
    client, log_path = mesh
    org, access, refresh = _sign_in(client)
    key = client.post(
        f"/v1/organizations/{org}/api_keys",
        headers={"Authorization": f"Bearer {access}"},
        json={"displayName": "logs", "scopes": ["agents.list"], "environment": "API_KEY_ENVIRONMENT_LIVE"},
    )
    assert key.status_code == 200, key.text
    secret = key.json()["secret"]

    listed = client.get(f"/v1/organizations/{org}/agents", headers={"X-Api-Key": secret, "X-Request-Id": "req-logs-1"})
    assert listed.status_code == 200, listed.text
    assert listed.headers["X-Request-Id"] == "req-logs-1"
    lines = _rpc_lines(log_path, "req-logs-1", {AGENTS, DEVELOPER_API})
    by_service = {line["service"]: line for line in lines}
    assert {AGENTS, DEVELOPER_API} <= set(by_service), lines
    agents = by_service[AGENTS]
    assert agents["method"] == "ListAgents"
    assert agents["code"] == "OK"
    assert agents["level"] == "INFO"
    assert agents["principal"] == key.json()["apiKey"]["name"]
    assert agents["organization"] == org
    assert agents["duration_ms"] >= 0
    assert agents["client_address"] == "127.0.0.1"
    assert by_service[DEVELOPER_API]["method"] == "VerifyApiKey"
    assert by_service[DEVELOPER_API]["principal"] == "services/agents"

    # Without an X-Request-Id (or with one the mesh will not log) the edge makes one and says which.
    for headers in ({}, {"X-Request-Id": 'has spaces and "quotes"'}, {"X-Request-Id": "x" * 129}):
        answered = client.get(f"/v1/organizations/{org}/agents", headers={"X-Api-Key": secret, **headers})
        assert answered.status_code == 200, answered.text
        made = answered.headers["X-Request-Id"]
        assert len(made) == 32 and made != headers.get("X-Request-Id")
        assert _rpc_lines(log_path, made, {AGENTS}), made

    refused = client.get(f"/v1/organizations/{org}/agents", headers={"Authorization": f"Bearer {access}x"})
    assert refused.status_code == 401
    denied = _rpc_lines(log_path, refused.headers["X-Request-Id"], {AGENTS})
    assert [(line["code"], line["principal"]) for line in denied] == [("UNAUTHENTICATED", "")]

    records = _records(log_path)  # every line is one JSON object: json.loads would have failed
    assert {"time", "level", "process", "logger", "message"} <= set(records[0])
    text = log_path.read_text()
    for value in (PASSWORD, access, refresh, secret, secret.removeprefix("vk_live_")[:16], access.split(".")[2]):
        assert value not in text, "a credential reached the log"
