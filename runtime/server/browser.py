"""The routes a browser (and any AsyncAPI tool) starts from (docs/client.md).

    GET /asyncapi.json      the AsyncAPI document of the WebSocket walkers (asyncapi.py)
    GET /__jacc/jacc.js     the ES module client
    GET /__jacc/console     the console page, with its console.js, console.css and favicon.svg
    GET /                   a redirect to the console, unless the app has a route at `/`

The page and the scripts are files of the package (`static/`), read as package
data, so an installed wheel serves them with no build step. `[server] console =
false` removes the console and the redirect; the document and jacc.js stay, since
an app's own pages may use them.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..walker import Walker
from .asyncapi import asyncapi_document
from .protocol import encode

__all__ = ["CONSOLE_PATH", "browser_routes"]

CONSOLE_PATH = "/__jacc/console"

_STATIC = importlib.resources.files(__package__) / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The console loads nothing from any other origin, and this makes the browser hold it to that.
_CONSOLE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def browser_routes(
    walkers: Callable[[], Iterable[type[Walker]]], *, title: str, version: str,
    console: bool, root_taken: bool,
) -> list[BaseRoute]:
    """The routes above; `walkers` gives the walkers served now (a dev reload changes them)."""

    async def document(request: Request) -> Response:
        body = asyncapi_document(walkers(), title=title, version=version,
                                 host=request.headers.get("host"),
                                 secure=request.url.scheme == "https")
        return Response(encode(body), media_type="application/json")

    routes: list[BaseRoute] = [
        Route("/asyncapi.json", document, methods=["GET"]),
        Route("/__jacc/jacc.js", _static("jacc.js"), methods=["GET"]),
    ]
    if console:
        routes += [
            Route(CONSOLE_PATH, _static("console.html", _CONSOLE_POLICY), methods=["GET"]),
            Route("/__jacc/console.js", _static("console.js"), methods=["GET"]),
            Route("/__jacc/console.css", _static("console.css"), methods=["GET"]),
            Route("/__jacc/favicon.svg", _static("favicon.svg"), methods=["GET"]),
        ]
        if not root_taken:
            routes.append(Route("/", _to_console, methods=["GET"]))
    return routes


def _static(name: str, policy: str | None = None) -> Callable:
    resource = _STATIC / name
    media_type = _TYPES[name[name.rindex("."):]]
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    if policy:
        headers["Content-Security-Policy"] = policy

    async def endpoint(request: Request) -> Response:
        # Read per request: a few KiB, and an edited file shows on reload while developing.
        return Response(resource.read_bytes(), media_type=media_type, headers=headers)

    return endpoint


async def _to_console(request: Request) -> Response:
    return RedirectResponse(CONSOLE_PATH, status_code=307)
