"""The reference page in a real browser: Swagger UI 5 must render the OpenAPI 3.1 document offline."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import pathlib
import re
import shutil

import httpx
import pytest
from starlette.applications import Starlette

from gateway_rest.descriptors import Catalog
from gateway_rest.docs import docs_routes, openapi_route, swagger_ui_version
from gateway_rest.openapi import build_openapi
from gateway_rest.vocelio_policy import vocelio_is_public, vocelio_operation_extras
from mesh import registry
from tests.support.edge import serve_app

CHROMIUM = "/usr/bin/chromium"
TITLE = "Vocelio REST API"

# Swagger UI's bundle is about 1.5 MB; on a loaded 2-core machine httpx's 5 s default read timeout
# was not enough (the per-test ceiling still bounds the test).
_CLIENT_TIMEOUT = 30.0


def _chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if found is None:
        message = "chromium is not installed (make install installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _app() -> Starlette:
    catalog = Catalog.from_file(registry.default_descriptor_set())
    factory = functools.partial(
        build_openapi,
        catalog,
        title=TITLE,
        version="0.1.0",
        is_public=vocelio_is_public,
        operation_extras=vocelio_operation_extras,
    )
    return Starlette(routes=[*docs_routes(), openapi_route(factory)])


async def _dump_dom(chromium: str, url: str, profile: pathlib.Path) -> str:
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_swagger_ui_renders_the_vocelio_operations(tmp_path):
    chromium = _chromium()
    async with serve_app(_app()) as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=_CLIENT_TIMEOUT) as client:
            page = await client.get("/docs")
            spec = await client.get("/openapi.json")
        # The page opens on the collapsed list of services; a deep link opens one of them.
        dom = await _dump_dom(chromium, f"{base}/docs#/AgentsService", tmp_path / "profile")

    # The static page: our title, our spec URL, nothing from another host.
    assert page.status_code == 200
    assert "<title>Vocelio API reference</title>" in page.text
    assert 'data-openapi-url="/openapi.json"' in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert spec.headers["content-type"] == "application/json"
    assert json.loads(spec.content)["info"]["title"] == TITLE
    assert json.loads(spec.content)["openapi"].startswith("3.1.")  # served as it is, no 3.0 downgrade

    # The rendered page: content that only Swagger UI's JavaScript produces.
    assert 'class="swagger-ui' in dom
    assert "OAS 3.1" in dom  # Swagger UI 5 read the document as OpenAPI 3.1
    assert TITLE in dom  # info title, from the document
    assert "/v1/organizations/{organization}/agents" in dom
    assert "Gets one agent." in dom  # an operation summary
    assert "AgentsService" in dom  # a tag
    assert 'data-tag="IdentityService"' in dom  # another, collapsed
    assert "Unable to render this definition" not in dom


async def test_swagger_ui_shows_the_oauth_endpoints(tmp_path):
    chromium = _chromium()
    async with serve_app(_app()) as port:
        dom = await _dump_dom(chromium, f"http://127.0.0.1:{port}/docs#/IdentityService", tmp_path / "profile")
    assert "/v1/auth/token" in dom
    assert "Unable to render this definition" not in dom


async def test_docs_assets_and_openapi_caching():
    async with (
        serve_app(_app()) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=_CLIENT_TIMEOUT) as client,
    ):
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        css = await client.get("/docs/assets/swagger-ui.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert (await client.get("/docs/assets/index.html")).status_code == 404  # only the files the page uses
        assert (await client.get("/docs/assets/..%2Fswagger-initializer.js")).status_code == 404
        init = await client.get("/docs/init.js")
        assert init.status_code == 200
        assert "SwaggerUIBundle" in init.text
        assert "3.0" not in init.text  # Swagger UI 5 reads 3.1 itself: the in-browser downgrade is gone
        assert (await client.get("/docs/assets/swagger-ui-bundle.js.map")).status_code == 404
        first = await client.get("/openapi.json")
        second = await client.get("/openapi.json", headers={"If-None-Match": first.headers["etag"]})
        assert second.status_code == 304
        assert first.content == (await client.get("/openapi.json")).content


def test_the_shipped_swagger_ui_is_version_5():
    assert swagger_ui_version() >= (5,)
