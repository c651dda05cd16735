"""A walker that raises (EXECUTION_ERROR, docs/protocol.md) against a real `jacc serve`, with and without --dev.

The client learns the exception's type and text; the server log gets the
traceback at the `.jac` line; only in dev mode does the frame carry that line.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from e2e_support import ask, run, start_server
from websockets.asyncio.client import connect

# Starts with a blank line, so that "line 1" is never right by accident.
SOURCE = """
# Walkers that fail at known lines.

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Boom {
    has message: str = "boom";

    async can explode with Root entry {
        raise ValueError(self.message);
    }
}

def deeper(x: int) -> int {
    return 10 // x;
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Divide {
    has by: int = 0;

    async can divide with Root entry {
        report deeper(self.by);
    }
}

walker : pub Lookup {
    can find with Root entry {
        report {}["nope"];
    }
}
"""


def line_of(text: str) -> int:
    (number,) = [n for n, line in enumerate(SOURCE.splitlines(), 1) if text in line]
    return number


RAISE, DIVIDE, DEEPER, LOOKUP = (line_of("raise ValueError"), line_of("report deeper"),
                                 line_of("return 10 // x"), line_of('["nope"]'))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("app"), SOURCE)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("app"), SOURCE, args=("--dev",))
    yield running
    running.stop()


async def errors(server) -> list[dict]:
    async with connect(server.ws("/ws/Boom")) as ws:
        boom = (await ask(ws, {}))["error"]
        custom = (await ask(ws, {"message": "boom: x"}))["error"]
        assert (await ask(ws, {"type": "ping"}))["type"] == "pong"  # the socket stays usable
    async with connect(server.ws("/ws/Divide")) as ws:
        divide = (await ask(ws, {}))["error"]
        assert (await ask(ws, {"by": 5}))["data"]["reports"] == [2]
    lookup = httpx.post(f"{server.http}/walker/Lookup", json={}, timeout=10)
    assert lookup.status_code == 500
    return [boom, custom, divide, lookup.json()["error"]]


def test_the_frame_names_the_exception_and_nothing_else(plain):
    boom, custom, divide, lookup = run(errors(plain))
    assert boom == {"code": "EXECUTION_ERROR", "message": "ValueError: boom"}
    assert custom == {"code": "EXECUTION_ERROR", "message": "ValueError: boom: x"}
    assert divide == {"code": "EXECUTION_ERROR",
                      "message": "ZeroDivisionError: integer division or modulo by zero"}
    assert lookup == {"code": "EXECUTION_ERROR", "message": "KeyError: 'nope'"}


def test_the_log_holds_the_traceback_at_the_jac_line(plain):
    run(errors(plain))
    output = plain.output()
    assert f"walker Boom raised ValueError at app.jac:{RAISE}" in output
    assert f"walker Divide raised ZeroDivisionError at app.jac:{DEEPER}" in output
    assert f"walker Lookup raised KeyError at app.jac:{LOOKUP}" in output
    assert re.search(rf'File ".*app\.jac", line {RAISE}, in explode', output)
    assert re.search(rf'File ".*app\.jac", line {DIVIDE}, in divide\n', output)
    assert re.search(rf'File ".*app\.jac", line {DEEPER}, in deeper\n', output)


def test_in_dev_mode_the_frame_also_carries_the_jac_line(dev):
    boom, custom, divide, lookup = run(errors(dev))
    assert boom == {
        "code": "EXECUTION_ERROR",
        "message": "ValueError: boom",
        "line": RAISE,
        "details": [{"file": "app.jac", "line": RAISE, "function": "explode"}],
    }
    assert custom["line"] == RAISE
    assert divide["message"] == "ZeroDivisionError: integer division or modulo by zero"
    assert divide["line"] == DEEPER
    assert divide["details"] == [{"file": "app.jac", "line": DIVIDE, "function": "divide"},
                                 {"file": "app.jac", "line": DEEPER, "function": "deeper"}]
    assert lookup["line"] == LOOKUP
    # The file is named as the user knows it, never by a path on the server.
    assert str(dev.folder) not in json.dumps([boom, divide, lookup])
