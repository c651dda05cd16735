"""Dev-mode builds (runtime/reload.py), in process.

tests/e2e/test_dev_reload.py proves the watch against a real `jacc serve --dev`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import jacc_runtime
from jacc_runtime import Walker, entry, report
from jacc_runtime.server.app import JaccApp
from jacc_runtime.server.auth import TokenService
from jacc_runtime.server.reload import DevReloader
from jacc.cli import load_program

SECRET = "unit-test-secret-of-at-least-32-bytes!"

ECHO = """
@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Echo {{
    has message: str = "";
    async can answer with Root entry {{ report {version}; }}
}}
"""


def program(version: int) -> str:
    return ECHO.format(version=version)


def reloader_for(tmp_path: Path, source: str) -> tuple[JaccApp, DevReloader, Path]:
    path = tmp_path / "app.jac"
    path.write_text(source, encoding="utf-8")
    app = JaccApp(load_program(path), tokens=TokenService(SECRET))
    return app, DevReloader(app, path, load_program), path


def test_a_good_build_swaps_the_walkers_and_counts_a_version(tmp_path):
    app, reloader, path = reloader_for(tmp_path, program(1))
    old = app.bindings["Echo"].cls
    path.write_text(program(2))
    status = asyncio.run(reloader.reload())
    assert (status.ok, status.version, status.builds) == (True, 2, 2)
    assert app.bindings["Echo"].cls is not old


def test_a_build_with_errors_changes_nothing_served(tmp_path, capsys):
    app, reloader, path = reloader_for(tmp_path, program(1))
    served = app.bindings
    path.write_text(program(2).replace("async walker", "walker"))
    status = asyncio.run(reloader.reload())
    assert app.bindings is served
    assert (status.ok, status.version, status.builds) == (False, 1, 2)
    assert [d["code"] for d in status.diagnostics] == ["E0101"]
    assert status.rendered in capsys.readouterr().err


def test_unchanged_and_empty_files_are_not_built(tmp_path):
    app, reloader, path = reloader_for(tmp_path, program(1))
    assert asyncio.run(reloader.reload()).builds == 1
    path.write_text("")  # an editor between truncating and writing
    assert asyncio.run(reloader.reload()).builds == 1
    assert "Echo" in app.bindings


def test_a_top_level_that_raises_is_a_failed_build_with_its_traceback(tmp_path, capsys):
    app, reloader, path = reloader_for(tmp_path, program(1))
    path.write_text(program(2) + "\nglob ratio = 1 / 0;\n")
    status = asyncio.run(reloader.reload())
    assert status.ok is False and status.diagnostics == ()
    assert "ZeroDivisionError" in status.rendered
    assert "Echo" in app.bindings


def test_a_missing_file_is_a_failed_build_and_a_good_one_recovers(tmp_path):
    app, reloader, path = reloader_for(tmp_path, program(1))
    path.unlink()
    status = asyncio.run(reloader.reload())
    assert status.ok is False and "app.jac" in status.rendered
    path.write_text(program(1))  # the same text as served: still rebuilt, to recover
    status = asyncio.run(reloader.reload())
    assert (status.ok, status.version, status.builds) == (True, 2, 3)


def walker_w(protocol: str = "websocket", public: bool = True) -> type[Walker]:
    """A walker named `W` with these rules (each call a new class, as a reload makes)."""

    class W(Walker, protocol=protocol, public=public):
        @entry
        async def answer(self):
            report(self, 1)

    return W


@pytest.mark.parametrize(("after", "reason"), [
    (None, "walker removed"),
    ({"protocol": "http"}, "walker changed"),
    ({"public": False}, "walker changed"),
    ({}, None),  # the same rules: the connections stay
], ids=["removed", "to-http", "to-private", "same-rules"])
def test_set_walkers_names_the_walkers_whose_connections_must_reconnect(after, reason):
    app = JaccApp([walker_w()], tokens=TokenService(SECRET))
    stale = app.set_walkers([] if after is None else [walker_w(**after)])
    assert stale == ({"W": reason} if reason else {})


def function_w(protocol: str = "websocket", public: bool = True):
    @jacc_runtime.function(protocol=protocol, public=public)
    def W(message: str) -> str:  # noqa: N802 - the walker's name, as a reload could make it
        return message

    return W


@pytest.mark.parametrize(("before", "after", "reason"), [
    (function_w(), None, "function removed"),
    (function_w(), function_w(protocol="http"), "function changed"),
    (function_w(), function_w(public=False), "function changed"),
    (function_w(), walker_w(), "function changed"),  # the same name, now a walker
    (walker_w(), function_w(), "walker changed"),
    (function_w(), function_w(), None),
], ids=["removed", "to-http", "to-private", "to-walker", "from-walker", "same-rules"])
def test_a_function_whose_rules_change_is_reconnected_too(before, after, reason):
    app = JaccApp([before], tokens=TokenService(SECRET))
    stale = app.set_walkers([] if after is None else [after])
    assert stale == ({"W": reason} if reason else {})
