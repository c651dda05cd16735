"""Every sample's and test app's AsyncAPI document passes the official parser
(npm `@asyncapi/parser`, installed in tests/asyncapi/ by `.ci/run`), run with Node.js.

Locally, without `npm ci --prefix tests/asyncapi`, these tests skip and say so; with
`CI=true` they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from jacc_runtime.server.asyncapi import asyncapi_document
from jacc_runtime.walker import WalkerSpec

from jacc.cli import load_program

REPO = Path(__file__).resolve().parent.parent
CHECKER = REPO / "tests" / "asyncapi"
APPS = sorted([*(REPO / "samples").glob("*.jac"), *(REPO / "tests" / "e2e" / "apps").glob("*.jac")])


def _parser_or_skip() -> None:
    reason = None
    if shutil.which("node") is None:
        reason = "no `node` on PATH: install Node.js to run the AsyncAPI parser"
    elif not (CHECKER / "node_modules" / "@asyncapi" / "parser").is_dir():
        reason = "the AsyncAPI parser is not installed: npm ci --prefix tests/asyncapi"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class _Counter:
    """A streaming walker built by hand, for a private stream and its security."""

    __jacc_spec__ = WalkerSpec(name="Counter", protocol="websocket", public=False, stream=True)


# A document the parser must refuse, so that the check can be seen to fail.
_BROKEN = {"asyncapi": "3.0.0", "info": {"title": "x"}, "channels": {"A": {"address": 5}}}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, list[str]]:
    """The parser's output lines for each document, from one run of Node (it starts slowly)."""
    _parser_or_skip()
    folder = tmp_path_factory.mktemp("asyncapi")
    documents = {
        f"{path.parent.name}-{path.stem}": asyncapi_document(
            load_program(path), title=path.stem, version="0.1.0", host="127.0.0.1:8000")
        for path in APPS
    }
    documents["streaming"] = asyncapi_document([_Counter], title="s", version="1")
    documents["broken"] = _BROKEN
    for name, document in documents.items():
        (folder / f"{name}.json").write_text(json.dumps(document), encoding="utf-8")
    result = subprocess.run(["node", str(CHECKER / "check.mjs"), *(f"{n}.json" for n in documents)],
                            cwd=folder, capture_output=True, text=True, timeout=300)
    print(result.stdout)  # the parser's own words, for whoever reads the log
    assert result.returncode == 1, result.stderr  # the broken one, and only it, as below
    lines: dict[str, list[str]] = {name: [] for name in documents}
    for line in result.stdout.splitlines():
        lines[line.partition(".json: ")[0]].append(line.partition(".json: ")[2])
    return lines


@pytest.mark.parametrize("app", APPS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_app_passes_the_official_parser(verdicts: dict[str, list[str]], app: Path) -> None:
    said = verdicts[f"{app.parent.name}-{app.stem}"]
    assert said[-1].startswith("valid AsyncAPI 3.0.0"), said
    assert not any(line.startswith("error ") for line in said), said


def test_the_streaming_messages_pass_the_parser_too(verdicts: dict[str, list[str]]) -> None:
    assert verdicts["streaming"][-1].startswith("valid AsyncAPI 3.0.0"), verdicts["streaming"]


def test_the_check_can_fail(verdicts: dict[str, list[str]]) -> None:
    assert verdicts["broken"][-1].startswith("INVALID"), verdicts["broken"]
    assert any(line.startswith("error ") for line in verdicts["broken"])
