"""`jacc serve --dev` (docs/protocol.md#dev-mode): edits reach open sockets, routes follow, errors keep the old code.

Every test starts its own `jacc serve --dev` and edits its app.jac. The watcher
takes some tens of milliseconds to see a save, so the tests poll, with a
deadline, for the first answer that shows the new code.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
import pytest
from e2e_support import ask, run, start_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

DEADLINE = 10.0  # seconds; a reload normally lands in well under one


def ws_walker(name: str, version: int, *, public: bool = True) -> str:
    return f"""
@restspec(protocol=APIProtocol.WEBSOCKET)
async walker {": pub " if public else ""}{name} {{
    has message: str = "";

    async can answer with Root entry {{
        report {{"walker": "{name}", "v": {version}, "echo": self.message}};
    }}
}}
"""


def http_walker(name: str, version: int) -> str:
    return f"""
walker : pub {name} {{
    has message: str = "";

    can answer with Root entry {{
        report {{"walker": "{name}", "v": {version}, "echo": self.message}};
    }}
}}
"""


@pytest.fixture
def dev(tmp_path):
    """Start a `jacc serve --dev` on a program; stopped after the test."""
    servers = []

    def start(*walkers: str):
        server = start_server(tmp_path / f"app{len(servers)}", "".join(walkers), args=("--dev",))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def save(server, *walkers: str, atomic: bool = False) -> None:
    """Write app.jac as an editor does: in place, or by renaming a new file over it."""
    path = server.folder / "app.jac"
    if atomic:
        temporary = server.folder / ".app.jac.swp"
        temporary.write_text("".join(walkers), encoding="utf-8")
        os.replace(temporary, path)
    else:
        path.write_text("".join(walkers), encoding="utf-8")


def status(server) -> dict:
    response = httpx.get(f"{server.http}/__jacc/status", timeout=5)
    assert response.status_code == 200
    return response.json()


def wait_status(server, accept) -> dict:
    deadline = time.monotonic() + DEADLINE
    while True:
        current = status(server)
        if accept(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"status still {current} after {DEADLINE}s\n{server.output()}")
        time.sleep(0.02)


async def eventually(attempt, accept):
    """Run `attempt()` until `accept(result)`; return that result."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = await attempt()
        if accept(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {DEADLINE}s")
        await asyncio.sleep(0.03)  # well under messages_per_second (50)


def reports(frame: dict) -> list:
    assert frame["ok"] is True, frame
    return frame["data"]["reports"]


async def refused_status(server, path: str) -> int | None:
    """The HTTP status that refuses an upgrade to `path`, or None if it is accepted."""
    try:
        async with connect(server.ws(path)):
            return None
    except InvalidStatus as refused:
        return refused.response.status_code


async def closed_with(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as caught:
        await asyncio.wait_for(ws.recv(), DEADLINE)
    return caught.value.rcvd.code, caught.value.rcvd.reason


def test_an_open_connection_runs_the_new_code_on_its_next_message(dev):
    server = dev(ws_walker("Echo", 1))

    async def scenario():
        async with connect(server.ws("/ws/Echo")) as ws:
            assert reports(await ask(ws, {"message": "a"})) == [
                {"walker": "Echo", "v": 1, "echo": "a"}]
            save(server, ws_walker("Echo", 2))
            frame = await eventually(lambda: ask(ws, {"message": "b"}),
                                     lambda frame: reports(frame)[0]["v"] != 1)
            assert reports(frame) == [{"walker": "Echo", "v": 2, "echo": "b"}]
            assert ws.state is State.OPEN
            assert server.health()["connections"] == 1  # the same one, never dropped
            # A second edit reaches the same connection too.
            save(server, ws_walker("Echo", 3))
            await eventually(lambda: ask(ws, {"message": "c"}),
                             lambda frame: reports(frame)[0]["v"] == 3)

    run(scenario())
    assert status(server)["version"] == 3
    assert "reloaded app.jac: version 2" in server.output()


def test_a_new_walker_gets_its_routes(dev):
    server = dev(ws_walker("Echo", 1))

    async def scenario():
        assert await refused_status(server, "/ws/Fresh") == 404
        assert httpx.post(f"{server.http}/walker/Sum", json={}).status_code == 404
        save(server, ws_walker("Echo", 1), ws_walker("Fresh", 1), http_walker("Sum", 1))
        await eventually(lambda: refused_status(server, "/ws/Fresh"), lambda code: code is None)
        async with connect(server.ws("/ws/Fresh")) as ws:
            assert reports(await ask(ws, {"message": "hi"}))[0]["walker"] == "Fresh"
        response = httpx.post(f"{server.http}/walker/Sum", json={"message": "x"})
        assert response.status_code == 200
        assert response.json()["data"]["reports"] == [{"walker": "Sum", "v": 1, "echo": "x"}]

    run(scenario())
    assert status(server)["changes"]["added"] == ["Fresh", "Sum"]


def test_a_removed_walker_has_its_connections_closed_with_1012_at_once(dev):
    server = dev(ws_walker("Echo", 1), ws_walker("Old", 1))

    async def scenario():
        async with connect(server.ws("/ws/Echo")) as echo, \
                connect(server.ws("/ws/Old")) as old, connect(server.ws("/ws/Old")) as idle:
            assert reports(await ask(old, {}))[0]["walker"] == "Old"
            # Saved the way many editors do: a new file renamed over the old one.
            save(server, ws_walker("Echo", 2), atomic=True)
            # Neither connection sends anything: the close comes by itself.
            assert await closed_with(old) == (1012, "walker removed")
            assert await closed_with(idle) == (1012, "walker removed")
            assert reports(await ask(echo, {"message": "still"}))[0]["v"] == 2
        assert await refused_status(server, "/ws/Old") == 404

    run(scenario())
    assert status(server)["changes"]["removed"] == ["Old"]


def test_a_walker_whose_rules_change_closes_its_sockets_with_1012(dev):
    server = dev(ws_walker("Flip", 1), ws_walker("Guard", 1))

    async def scenario():
        async with connect(server.ws("/ws/Flip")) as flip, connect(server.ws("/ws/Guard")) as guard:
            assert reports(await ask(guard, {}))[0]["v"] == 1
            # Flip becomes an HTTP walker; Guard stops being public.
            save(server, http_walker("Flip", 2), ws_walker("Guard", 2, public=False))
            assert await closed_with(flip) == (1012, "walker changed")
            assert await closed_with(guard) == (1012, "walker changed")
        # Reconnecting meets the new rules: Flip is HTTP now, Guard wants a token.
        assert await refused_status(server, "/ws/Flip") == 404
        response = httpx.post(f"{server.http}/walker/Flip", json={})
        assert response.json()["data"]["reports"][0]["v"] == 2
        async with connect(server.ws("/ws/Guard")) as guard:
            assert (await ask(guard, {}))["error"]["code"] == "UNAUTHORIZED"
            assert await closed_with(guard) == (4401, "missing")

    run(scenario())
    assert status(server)["changes"]["reconnecting"] == ["Flip", "Guard"]


BROKEN = """
@restspec(protocol=APIProtocol.WEBSOCKET)
walker : pub Echo {
    has message: str = "";

    can answer with Root entry {
        report {"v": 2, "echo": self.mesage};
    }
}
"""


def test_an_edit_with_errors_keeps_the_old_code_until_a_good_edit(dev):
    server = dev(ws_walker("Echo", 1))
    assert status(server) == {
        "ok": True, "version": 1, "builds": 1, "file": "app.jac", "walkers": ["Echo"],
        "diagnostics": [], "rendered": "", "changes": {},
    }

    async def scenario():
        async with connect(server.ws("/ws/Echo")) as ws:
            save(server, BROKEN)
            broken = wait_status(server, lambda s: s["builds"] == 2)
            # The old version still answers, on the open connection and on a new one.
            assert reports(await ask(ws, {"message": "a"}))[0]["v"] == 1
            async with connect(server.ws("/ws/Echo")) as other:
                assert reports(await ask(other, {"message": "b"}))[0]["v"] == 1
            save(server, ws_walker("Echo", 3))
            frame = await eventually(lambda: ask(ws, {"message": "c"}),
                                     lambda frame: reports(frame)[0]["v"] != 1)
            assert reports(frame)[0]["v"] == 3
            return broken

    broken = run(scenario())
    assert broken["ok"] is False
    assert broken["version"] == 1 and broken["walkers"] == ["Echo"]
    codes = [(d["code"], d["line"], d["column"]) for d in broken["diagnostics"]]
    assert codes == [("E0101", 3, 1), ("E0401", 7, 38)]
    assert broken["diagnostics"][0] == {
        "code": "E0101", "severity": "error",
        "message": "WebSocket walker `Echo` must be declared `async walker`",
        "line": 3, "column": 1, "end_line": 3, "end_column": 6,
        "help": "write `async walker : pub Echo`",
    }
    undefined = broken["diagnostics"][1]
    assert "did you mean `message`" in f"{undefined['message']} {undefined['help']}"
    assert broken["rendered"].startswith("error[E0101]: WebSocket walker `Echo`")
    assert "--> app.jac:7:38" in broken["rendered"]
    # The same diagnostics, rendered, in the server's output.
    output = server.output()
    assert broken["rendered"] in output
    assert "app.jac has errors; still serving version 1" in output
    assert "Traceback" not in output

    fixed = status(server)
    assert fixed["ok"] is True and fixed["version"] == 2 and fixed["builds"] == 3
    assert fixed["diagnostics"] == [] and fixed["rendered"] == ""
    assert "reloaded app.jac: version 2 (errors fixed)" in server.output()


def test_a_burst_of_writes_is_built_once(dev):
    server = dev(ws_walker("Echo", 1))
    path = server.folder / "app.jac"
    # An editor's save: truncate, write in pieces, then a broken state that the
    # last write fixes. Only the final text is built.
    final = ws_walker("Echo", 2)
    path.write_text("", encoding="utf-8")
    path.write_text(BROKEN, encoding="utf-8")
    path.write_text(final[: len(final) // 2], encoding="utf-8")
    path.write_text(final, encoding="utf-8")
    settled = wait_status(server, lambda s: s["version"] == 2)
    time.sleep(0.3)  # room for a second build, if the burst had been split
    assert status(server) == settled
    assert settled["ok"] is True and settled["builds"] == 2
    assert "error[" not in server.output()


def test_saving_the_same_text_again_builds_nothing(dev):
    server = dev(ws_walker("Echo", 1))
    save(server, ws_walker("Echo", 1))
    (server.folder / "notes.txt").write_text("another file in the folder")
    save(server, ws_walker("Echo", 2))
    wait_status(server, lambda s: s["version"] == 2)
    assert status(server)["builds"] == 2


def test_the_status_route_exists_only_in_dev_mode(server):
    response = httpx.get(f"{server.http}/__jacc/status", timeout=5)
    assert response.status_code == 404
    assert json.loads(response.text)["error"]["code"] == "NOT_FOUND"
