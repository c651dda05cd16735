"""The browser's routes (runtime/server/browser.py) in process; the pages themselves run in
Chromium in tests/e2e/test_chromium.py."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import pytest
from jacc_runtime import Walker, entry, field, report
from jacc_runtime.server.app import JaccApp, default_config
from jacc_runtime.server.auth import TokenService
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from starlette.testclient import TestClient

STATIC = Path(__file__).resolve().parent.parent / "runtime" / "server" / "static"
SECRET = "unit-test-secret-of-at-least-32-bytes!"


class Echo(Walker, protocol="websocket", public=True):
    """Says it back."""

    message = field("str")

    @entry
    async def echo(self):
        report(self, self.message)


class Home(Walker, public=True, method="GET", path="/"):
    @entry
    async def home(self):
        report(self, "the app's own page")


def _client(*walkers: type[Walker], console: bool = True) -> TestClient:
    config = default_config()
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, console=console))
    app = JaccApp(list(walkers) or [Echo], tokens=TokenService(SECRET), config=config)
    return TestClient(app)


def test_root_redirects_to_the_console() -> None:
    with _client() as client:
        response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/__jacc/console"


def test_an_apps_own_root_route_wins() -> None:
    with _client(Echo, Home) as client:
        response = client.get("/", follow_redirects=False)
        assert response.status_code == 200
        assert response.json()["data"]["reports"] == ["the app's own page"]
        assert client.get("/__jacc/console").status_code == 200


@pytest.mark.parametrize("path, media_type", [
    ("/__jacc/console", "text/html"),
    ("/__jacc/console.js", "text/javascript"),
    ("/__jacc/console.css", "text/css"),
    ("/__jacc/favicon.svg", "image/svg+xml"),
    ("/__jacc/jacc.js", "text/javascript"),
])
def test_static_files_are_served_from_the_package(path: str, media_type: str) -> None:
    with _client() as client:
        response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_console_may_load_from_its_own_origin_only() -> None:
    with _client() as client:
        policy = client.get("/__jacc/console").headers["content-security-policy"]
    assert "default-src 'none'" in policy
    for directive in ("script-src", "style-src", "connect-src", "img-src"):
        assert f"{directive} 'self'" in policy


def test_no_static_file_names_another_origin() -> None:
    # An SVG's xmlns is a name, not something fetched.
    url = re.compile(r'(?<!xmlns=")(https?|wss?)://')
    for path in STATIC.iterdir():
        assert not url.search(path.read_text(encoding="utf-8")), path.name


def test_console_false_removes_the_console_and_the_redirect() -> None:
    with _client(console=False) as client:
        assert client.get("/__jacc/console").status_code == 404
        assert client.get("/__jacc/console.js").status_code == 404
        assert client.get("/", follow_redirects=False).status_code == 404
        # An app's own pages may still use the document and the client.
        assert client.get("/asyncapi.json").status_code == 200
        assert client.get("/__jacc/jacc.js").status_code == 200


def test_asyncapi_json_names_the_server_it_was_asked_on() -> None:
    with _client() as client:
        document = client.get("/asyncapi.json", headers={"host": "chat.example:8443"}).json()
    assert document["servers"]["jacc"] == {"host": "chat.example:8443", "protocol": "ws",
                                          "description": "jacc serve"}
    assert document["channels"]["Echo"]["description"] == "Says it back."


def test_asyncapi_json_follows_the_walkers_served() -> None:
    app = JaccApp([Echo], tokens=TokenService(SECRET))
    with TestClient(app) as client:
        assert list(client.get("/asyncapi.json").json()["channels"]) == ["Echo"]
        app.set_walkers([])
        assert client.get("/asyncapi.json").json()["channels"] == {}
