"""The API reference page and the OpenAPI document, served by the edge itself.

The page is Swagger UI 5, which reads OpenAPI 3.1 as it is. Its files come from npm's
``swagger-ui-dist`` (pinned in package.json), copied into ``gateway_rest/swagger_ui/`` by
``make install`` and shipped as package data: every script, style and icon comes from this
server, so it works without internet access, and its Content-Security-Policy lets it load
nothing from anywhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

DEFAULT_TITLE = "Vocelio API reference"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-16x16.png": "image/png",
    "favicon-32x32.png": "image/png",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
_INIT_JS = """\
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Hundreds of operations: the page opens on the list of services; a tag opens on a click or
    // a deep link (/docs#/AgentsService), which keeps the list short enough to render whole.
    docExpansion: "none",
    defaultModelsExpandDepth: 0
  });
})();
"""
_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="{assets}/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}">
<noscript>{title}: this page needs JavaScript; the API description is at
<a href="{openapi_url}">{openapi_url}</a>.</noscript>
</div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""


SWAGGER_UI_DIR = pathlib.Path(__file__).with_name("swagger_ui")


class SwaggerUIMissingError(RuntimeError):
    """The Swagger UI files are not in the package (``make install`` copies them there)."""


def swagger_ui_dir() -> pathlib.Path:
    """The folder of the Swagger UI files shipped in this package.

    Raises:
        SwaggerUIMissingError: the files were not copied (run ``make install``).

    """
    if not (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():
        raise SwaggerUIMissingError(f"Swagger UI is missing from {SWAGGER_UI_DIR}: run `make install`")
    return SWAGGER_UI_DIR


def swagger_ui_version() -> tuple[int, ...]:
    """The version of the shipped Swagger UI (``(5, 36, 0)``), from the ``VERSION`` file copied with it."""
    text = (swagger_ui_dir() / "VERSION").read_text().strip()
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def docs_routes(
    openapi_url: str = "/openapi.json", *, title: str = DEFAULT_TITLE, path: str = "/docs"
) -> list[BaseRoute]:
    """Routes of the reference page (``path``) and of the Swagger UI files under it.

    Args:
        openapi_url: where the page loads the OpenAPI document from; a path starting with
            ``/`` is taken relative to the application's root path. It must be on the
            same origin: the page's Content-Security-Policy allows nothing else.
        title: the page title.
        path: where the page is served.

    Returns:
        Routes to add to a Starlette application.

    """
    folder = swagger_ui_dir()
    init_js = _INIT_JS.encode()
    init_tag = hashlib.sha256(init_js).hexdigest()[:12]

    async def page(request: Request) -> Response:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        spec = root + openapi_url if openapi_url.startswith("/") else openapi_url
        body = _PAGE.format(
            title=html.escape(title),
            assets=html.escape(f"{root}{path}/assets"),
            init=html.escape(f"{root}{path}/init.js?v={init_tag}"),
            openapi_url=html.escape(spec),
        )
        return HTMLResponse(body, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})

    async def init(request: Request) -> Response:
        return Response(init_js, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = _ASSETS.get(name)
        if media_type is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(folder / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    return [
        Route(path, page, methods=["GET"], name="docs"),
        Route(f"{path}/init.js", init, methods=["GET"], name="docs_init"),
        Route(f"{path}/assets/{{name}}", asset, methods=["GET"], name="docs_asset"),
    ]


def openapi_route(document_factory: Callable[[], Mapping[str, Any]], path: str = "/openapi.json") -> Route:
    """The route that serves the OpenAPI document as JSON.

    The factory runs once, in a worker thread, on the first request; the encoded bytes are
    kept and served with an ``ETag``.

    Args:
        document_factory: builds the document, for example a ``functools.partial`` of
            :func:`gateway_rest.openapi.build_openapi`.
        path: where the document is served.

    Returns:
        A Starlette route.

    """
    cache: list[tuple[bytes, str]] = []
    lock = asyncio.Lock()

    async def endpoint(request: Request) -> Response:
        if not cache:
            async with lock:
                if not cache:
                    document = await run_in_threadpool(document_factory)
                    data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
                    cache.append((data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'))
        data, etag = cache[0]
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="application/json", headers=headers)

    return Route(path, endpoint, methods=["GET"], name="openapi")
