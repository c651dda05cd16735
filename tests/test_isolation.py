"""A module written by `jacc build` imports only the runtime core (docs/architecture.md):
it runs in an interpreter where the compiler and Lark cannot be imported at all, and
loads nothing of the server (Starlette, uvicorn, PyJWT, `jacc_runtime.server`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from jacc.compiler import build_file

REPO = Path(__file__).resolve().parent.parent

APP = '''
"""Every kind of module-level element, so that none of them can sneak in an import."""
import from jaclang.runtimelib.server { APIProtocol }
import from collections { Counter }
import json;

glob GREETING = "hello", seen: list = [], shouted = 0;

"""A docstring, and a glob rebound without a declaration."""
def shout(text: str) -> str {
    shouted += 1;
    loud = lambda (t: str) { louder = t.upper(); return louder + "!"; };
    loud(text)
}

async def later(x: int) -> int {
    return x * 2;
}

walker Base {
    has n: int = 1;
    can first with entry { report "base"; }
}

@restspec(protocol=APIProtocol.WEBSOCKET, broadcast=True)
async walker : pub Chat(Base) {
    has message: str, tags: list[str] = [];
    static has count: int = 0;

    async can handle with Root entry {
        Chat.count += 1;
        seen.append(self.message);
        self.tags.append("x");
        report {"content": shout(self.message), "n": await later(self.n),
                "tags": self.tags, "count": Chat.count};
    }
    can bye with exit {
        report f"{GREETING} {len(seen)} {json.dumps(Counter(seen)['hi'])}";
        disengage;
        report "never";
    }
}

@restspec(method="GET")
walker : pub Stats {
    can go with entry { report [w for w in seen if (lambda { kept = w; return kept; })()]; }
}
'''

# Runs in a fresh interpreter: every import of `lark` or `jacc` (but not
# `jacc_runtime`) raises before the built module is imported.
CHILD = r'''
import importlib.util, json, sys

BLOCKED = {"lark", "jacc"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this interpreter")
        return None

sys.meta_path.insert(0, Blocker())
for name in list(sys.modules):
    if name.partition(".")[0] in BLOCKED:
        del sys.modules[name]
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"the blocker does not work: {name} imported")

import jacc_runtime

path = sys.argv[1]
spec = importlib.util.spec_from_file_location("app", path)
app = importlib.util.module_from_spec(spec)
sys.modules["app"] = app
spec.loader.exec_module(app)

results = {}
for name, fields in json.loads(sys.argv[2]):
    walker = getattr(app, name)
    results.setdefault(name, []).append(jacc_runtime.run(walker(**fields)))
SERVER = {"starlette", "uvicorn", "jwt", "watchfiles"}
leaked = sorted(m for m in sys.modules
                if m.partition(".")[0] in BLOCKED | SERVER or m.startswith("jacc_runtime.server"))
print(json.dumps({"results": results, "leaked": leaked}))
'''


def _run_isolated(module: Path, calls: list) -> dict:
    result = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(module), json.dumps(calls)],
        cwd=module.parent, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_built_module_runs_without_compiler_or_lark(tmp_path: Path) -> None:
    source = tmp_path / "app.jac"
    source.write_text(APP, encoding="utf-8")
    built = build_file(source, tmp_path / "app.py")
    assert built.path.read_text(encoding="utf-8").count("import jacc_runtime") == 1

    out = _run_isolated(built.path, [
        ["Chat", {"message": "hi"}],
        ["Chat", {"message": "hi", "n": 5}],
        ["Stats", {}],
    ])
    assert out["leaked"] == []
    assert out["results"] == {
        "Chat": [
            ["base", {"content": "HI!", "n": 2, "tags": ["x"], "count": 1}, "hello 1 1"],
            ["base", {"content": "HI!", "n": 10, "tags": ["x"], "count": 2}, "hello 2 2"],
        ],
        "Stats": [[["hi", "hi"]]],
    }


def test_built_sample_runs_without_compiler_or_lark(tmp_path: Path) -> None:
    for sample in sorted((REPO / "samples").glob("*.jac")):
        built = build_file(sample, tmp_path / f"{sample.stem}.py")
        text = built.path.read_text(encoding="utf-8")
        walkers = [line.split("(")[0].removeprefix("class ")
                   for line in text.splitlines() if line.startswith("class ")]
        assert walkers, sample
        calls = [[name, _required_fields(_class_body(text, name))] for name in walkers]
        out = _run_isolated(built.path, calls)
        assert out["leaked"] == [], sample
        assert set(out["results"]) == set(walkers), sample
        assert all(isinstance(r, list) for runs in out["results"].values() for r in runs)


def _required_fields(body: str) -> dict:
    """A value for each field without a default (`name = _jacc.field('str')`)."""
    values = {"str": "m", "int": 1, "float": 0.0, "bool": False}
    return {name: values.get(kind, None)
            for name, kind in re.findall(r"^    (\w+) = _jacc\.field\('(\w+)'(?:, doc=.*)?\)$",
                                         body, re.M)}


def _class_body(text: str, name: str) -> str:
    start = text.index(f"class {name}(")
    end = text.find("\nclass ", start + 1)
    return text[start: end if end != -1 else len(text)]
