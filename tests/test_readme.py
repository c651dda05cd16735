"""The README's layout section matches the tree: every folder at the top and every
module of the runtime is named there, and every path it names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _layout() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("## Layout", 1)[1].split("\n## ", 1)[0]


def _tracked_top_level() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    return {path.split("/")[0] for path in listed if not path.startswith(".")}


def test_every_top_level_entry_is_named() -> None:
    layout = _layout()
    missing = [name for name in _tracked_top_level() - {"README.md"}
               if not re.search(rf"(?m)^\s+{re.escape(name)}", layout)]
    assert missing == []


def test_every_runtime_module_is_named() -> None:
    layout = _layout()
    modules = {path.stem for path in (REPO / "runtime").rglob("*.py") if path.stem != "__init__"}
    missing = sorted(m for m in modules if not re.search(rf"\b{m}\b", layout))
    assert missing == []


def test_every_path_named_exists() -> None:
    for line in _layout().splitlines():
        match = re.match(r"\s{4}(\s*)(\S+/\S*|\S+\.\w+)\s", line + " ")
        if match and "," not in match.group(2):
            path = match.group(2)
            # An indented entry sits in a folder above it: try the folders the tree draws.
            assert any((REPO / parent / path).exists() for parent in _FOLDERS), path


_FOLDERS = ["", "runtime", "runtime/server", "runtime/server/ws"]
