"""The grammar (docs/language.md): the seed's walkers verbatim, every statement and expression
form, and the golden build of each program in `cases/` that compiles.

`cases/NAME.jac` that compiles must have `NAME.py` beside it: what `jacc build`
writes for it (built from a copy in a temporary folder, so the header names
`NAME.jac`). Run with `JACC_UPDATE_GOLDEN=1` to rewrite the goldens.
"""

from __future__ import annotations

import ast
import os
import shutil
import types
from pathlib import Path

import pytest

import jacc_runtime
from jacc import nodes as n
from jacc.compiler import build_file, compile_source
from jacc.diagnostics import JacError
from jacc.parser import parse_module
from jacc.source import Source, Span

ROOT = Path(__file__).parent.parent
CASES = Path(__file__).parent / "cases"
UPDATE = os.environ.get("JACC_UPDATE_GOLDEN") == "1"


def _compiles(path: Path) -> bool:
    try:
        compile_source(path.read_text(encoding="utf-8"), name=path.name)
    except JacError:
        return False
    except Exception:
        return True  # an internal error: let the build test show it
    return True


BUILD_CASES = sorted(p.stem for p in CASES.glob("*.jac") if _compiles(p))


def _build(name: str, folder: Path) -> Path:
    source = folder / f"{name}.jac"
    shutil.copyfile(CASES / f"{name}.jac", source)
    return build_file(source).path


def _walk(node: n.Node):
    """Every node below `node`, itself included. Not recursive: the cases include code
    nested as deeply as the compiler takes (e0004_*)."""
    pending = [node]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(reversed(list(n.children(node))))


# ---------------------------------------------------------------- the seed, verbatim

# The five walkers of Jac Scale's WebSocket guide, exactly as the guide prints them.
SEED_WALKERS = {
    "EchoMessage": '''@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub EchoMessage {
    has message: str;
    has client_id: str = "anonymous";

    async can echo with Root entry {
        report {
            "echo": self.message,
            "client_id": self.client_id
        };
    }
}''',
    "PingPong": '''@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub PingPong {
    async can pong with Root entry {
        report {"status": "pong"};
    }
}''',
    "SecureChat": '''@restspec(protocol=APIProtocol.WEBSOCKET)
async walker SecureChat {
    has message: str;

    async can respond with Root entry {
        report {"echo": self.message, "authenticated": True};
    }
}''',
    "ChatRoom": '''@restspec(protocol=APIProtocol.WEBSOCKET, broadcast=True)
async walker : pub ChatRoom {
    has message: str;
    has sender: str = "anonymous";

    async can handle with Root entry {
        report {
            "type": "message",
            "sender": self.sender,
            "content": self.message
        };
    }
}''',
    "TeamChat": '''@restspec(protocol=APIProtocol.WEBSOCKET, broadcast=True)
async walker TeamChat {
    has message: str;
    has room: str = "general";

    async can handle with Root entry {
        report {
            "room": self.room,
            "content": self.message,
            "authenticated": True
        };
    }
}''',
}

SEED_SPECS = {  # name: (public, broadcast, fields)
    "EchoMessage": (True, False, {"message": None, "client_id": "anonymous"}),
    "PingPong": (True, False, {}),
    "SecureChat": (False, False, {"message": None}),
    "ChatRoom": (True, True, {"message": None, "sender": "anonymous"}),
    "TeamChat": (False, True, {"message": None, "room": "general"}),
}


@pytest.mark.parametrize("name", SEED_WALKERS)
def test_each_seed_walker_parses_verbatim_on_its_own(name: str) -> None:
    module = parse_module(Source("seed.jac", SEED_WALKERS[name]))
    [walker] = module.body
    assert isinstance(walker, n.Walker)
    assert (walker.name, walker.is_async) == (name, True)
    compiled = compile_source(SEED_WALKERS[name], name="seed.jac")
    assert compiled.warnings == []


def test_the_seed_sample_holds_the_guide_walkers_verbatim() -> None:
    text = (ROOT / "samples" / "seed.jac").read_text(encoding="utf-8")
    for source in SEED_WALKERS.values():
        assert source in text


def test_seed_walkers_compile_to_their_specs(import_built, tmp_path: Path) -> None:
    module = import_built(_build("seed_walkers", tmp_path), "seed_walkers_built")
    for name, (public, broadcast, fields) in SEED_SPECS.items():
        spec = getattr(module, name).__jacc_spec__
        assert (spec.name, spec.protocol, spec.public, spec.broadcast) == (
            name, "websocket", public, broadcast)
        assert {f.name: (f.default_factory() if f.default_factory else None)
                for f in spec.fields} == fields
        assert all(f.type == "str" for f in spec.fields)


def test_seed_walkers_run(import_built, tmp_path: Path) -> None:
    module = import_built(_build("seed_walkers", tmp_path), "seed_walkers_run")
    assert jacc_runtime.run(module.EchoMessage(message="hi")) == [
        {"echo": "hi", "client_id": "anonymous"}]
    assert jacc_runtime.run(module.PingPong()) == [{"status": "pong"}]
    assert jacc_runtime.run(module.SecureChat(message="s")) == [
        {"echo": "s", "authenticated": True}]
    assert jacc_runtime.run(module.ChatRoom(message="m", sender="ann")) == [
        {"type": "message", "sender": "ann", "content": "m"}]
    assert jacc_runtime.run(module.TeamChat(message="t")) == [
        {"room": "general", "content": "t", "authenticated": True}]


def test_the_seed_walkers_case_is_the_guide_verbatim() -> None:
    text = (CASES / "seed_walkers.jac").read_text(encoding="utf-8")
    assert text == "\n" + "\n\n".join(SEED_WALKERS.values()) + "\n"


# ---------------------------------------------------------------- golden builds


@pytest.mark.parametrize("name", BUILD_CASES)
def test_build_matches_the_golden_file(name: str, tmp_path: Path) -> None:
    built = _build(name, tmp_path).read_text(encoding="utf-8")
    compile(built, f"{name}.py", "exec", dont_inherit=True)  # every generated module compiles
    golden = CASES / f"{name}.py"
    if UPDATE:
        golden.write_text(built, encoding="utf-8")
        return
    assert golden.exists(), f"{golden.name} is missing: run with JACC_UPDATE_GOLDEN=1"
    assert built == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", BUILD_CASES)
def test_golden_module_compiles_and_imports_only_the_runtime(name: str) -> None:
    text = (CASES / f"{name}.py").read_text(encoding="utf-8")
    compile(text, f"{name}.py", "exec", dont_inherit=True)
    tree = ast.parse(text)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "jacc_runtime" in imported
    assert not {m for m in imported if m.split(".")[0] in ("jacc", "lark", "jaclang")}


# ---------------------------------------------------------------- every form of the subset

FORMS = CASES / "forms.jac"


def test_forms_uses_every_node_of_the_language() -> None:
    module = parse_module(Source("forms.jac", FORMS.read_text(encoding="utf-8")))
    used = {type(node).__name__ for node in _walk(module)}
    every = {c.__name__ for c in vars(n).values()
             if isinstance(c, type) and issubclass(c, n.Node) and c is not n.Node}
    # A bad literal; `global` and `nonlocal`, which Jac does not need (W0002).
    never = {"BadString", "Global", "Nonlocal"}
    assert every - never - used == set()


def test_forms_uses_every_operator_and_literal_form() -> None:
    module = parse_module(Source("forms.jac", FORMS.read_text(encoding="utf-8")))
    found = list(_walk(module))
    binops = {x.op for x in found if isinstance(x, n.BinOp)}
    assert binops == {"+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^"}
    augmented = {x.op for x in found if isinstance(x, n.AugAssign)}
    assert augmented == {"+", "-", "*", "//", "%", "**", "<<", ">>", "|", "&", "^"}
    compares = {op for x in found if isinstance(x, n.Compare) for op in x.ops}
    assert compares == {"<", ">", "==", "!=", ">=", "<=", "in", "not in", "is", "is not"}
    assert any(isinstance(x, n.Compare) and len(x.ops) > 1 for x in found)  # chained
    assert {x.op for x in found if isinstance(x, n.UnaryOp)} == {"-", "+", "~", "not"}
    assert {x.op for x in found if isinstance(x, n.BoolOp)} == {"and", "or"}
    assert {x.kind for x in found if isinstance(x, n.Comprehension)} == {
        "list", "set", "dict", "generator"}
    conversions = {x.conversion for x in found if isinstance(x, n.FormattedValue)}
    assert {"r", "s", "a"} <= conversions
    assert any(isinstance(x, n.FormattedValue) and x.format_spec for x in found)
    constants = [x.value for x in found if isinstance(x, n.Constant)]
    assert b"bytes" in constants and "raw\\n" in constants and "triple\nquoted" in constants
    assert any(isinstance(x, n.Assign) and len(x.targets) > 1 for x in found)  # chained
    assert any(isinstance(x, n.Assign) and isinstance(x.targets[0], n.TupleExpr)
               for x in found)
    assert any(isinstance(x, n.Call) and any(k.name is None for k in x.keywords)
               and any(isinstance(a, n.Starred) for a in x.args) for x in found)
    assert any(isinstance(x, n.HasField) and x.static for x in found)
    assert any(isinstance(x, n.Walker) and x.bases for x in found)
    assert any(isinstance(x, n.Function) and x.is_async for x in found)
    assert any(isinstance(x, n.Ability) and x.name is None for x in found)
    # Jac's own forms: docstrings before each kind of declaration, lambdas of one value and
    # of statements, a final expression returned, a starred target in parentheses.
    assert all(any(isinstance(x, kind) and x.docstring for x in found)
               for kind in (n.Walker, n.Function, n.Ability))
    assert any(isinstance(x, n.HasField) and x.doc for x in found)
    lambdas = [x for x in found if isinstance(x, n.Lambda)]
    assert any(len(x.body) > 1 for x in lambdas) and any(len(x.body) == 1 for x in lambdas)
    assert any(x.returns is not None for x in lambdas) and any(x.params == () for x in lambdas)
    assert any(isinstance(x, n.Assign) and isinstance(x.targets[0], n.TupleExpr)
               and isinstance(x.targets[0].elts[-1], n.Starred) for x in found)


@pytest.fixture
def forms_module(import_built, tmp_path: Path) -> types.ModuleType:
    built = _build("forms", tmp_path)
    return import_built(built, f"forms_{tmp_path.name}")


EXPECTED_REPORTS = [
    "base entry",
    [13, 2, 15, 2, 1, 1, [2, 3], 4, [15], {}],
    [42, 31, 15, 5, 1000, 2500.0, 3.0, True, False, None,
     "single", "double", "triple\nquoted", "also triple", "raw\\n", b"bytes", "adjacent",
     "n=7", "   7|3.14|s|'hi'", "{literal} 8", "  7", "\\d7"],
    [[1, "two", 3.0], [1], [], [1, 2, 3], {"a": 1, "b": 2}, [1, "two", 3.0, 1]],
    [[0, 4, 16], ["a", "b", "c"], {"x": 1, "y": 2}, 6, [(0, 1), (1, 0)], [1, 2, 3]],
    "0+1+2+a=A+b=B",
    [7, "WALKERS", "a", "al", "sreklaw", "wa", [1, 3], "y.txt", 2, '{"k": [1]}', 1, 2],
    [9, 5, 14, 3.5, 3, 1, 49, -7, 7, -8, 14, 3, 3, 15, 6, 18],
    [False, True, True, False, True, False, True, True, False, True, True, False, 2, 2,
     "yes"],
    ["medium", 0, 2, 3, "boom", "finally", "assert: n is not four", "KeyError",
     "KeyError('again')", 2, 81, [2, 1, 0, None], 8, "walkers", ["a", ["b"], 3, 42, 4]],
    "before disengage",
    "after disengage",
    "base exit",
    "exit",
    "Everything ran 1 times",
]


def test_forms_run_gives_the_expected_reports(forms_module, tmp_path: Path) -> None:
    forms = forms_module
    assert jacc_runtime.run(forms.Everything(name="walkers")) == EXPECTED_REPORTS


def test_forms_in_memory_gives_the_same_reports() -> None:
    compiled = compile_source(FORMS.read_text(encoding="utf-8"), name="forms.jac")
    namespace: dict = {"__name__": "forms_in_memory"}
    exec(compiled.code, namespace)
    assert jacc_runtime.run(namespace["Everything"](name="walkers")) == EXPECTED_REPORTS


def test_forms_disengage_ends_the_walk_at_once(forms_module, tmp_path: Path) -> None:
    reports = jacc_runtime.run(forms_module.Everything(name="stop"))
    assert reports[-1] == "before disengage"
    assert "after disengage" not in reports and "exit" not in reports
    assert "base exit" not in reports


def test_forms_defaults_are_per_instance_and_static_has_is_shared(forms_module, tmp_path: Path) -> None:
    forms = forms_module
    first, second = forms.Everything(name="alpha"), forms.Everything(name="beta")
    assert first.items == [] and first.items is not second.items
    assert first.extra is not second.extra
    jacc_runtime.run(first)
    assert first.items == [15] and second.items == []
    jacc_runtime.run(second)
    assert forms.Everything.runs == 2
    assert "runs" not in vars(first) and forms.Base.made == 0
    assert [f.name for f in forms.Everything.__jacc_spec__.fields] == [
        "origin", "name", "items", "extra"]  # static has is no field


def test_forms_missing_required_field_names_it(forms_module, tmp_path: Path) -> None:
    forms = forms_module
    with pytest.raises(TypeError, match="'name'"):
        forms.Everything()
    with pytest.raises(TypeError, match="'nickname'"):
        forms.Everything(name="x", nickname="y")


def test_forms_spec(forms_module, tmp_path: Path) -> None:
    forms = forms_module
    spec = forms.Everything.__jacc_spec__
    assert (spec.protocol, spec.broadcast, spec.public, spec.is_async) == (
        "websocket", True, True, True)
    fields = {f.name: (f.type, f.required, f.default_factory and f.default_factory())
              for f in spec.fields}
    assert fields == {
        "origin": ("str", False, "base"),
        "name": ("str", True, None),
        "items": ("list[int]", False, []),
        "extra": ("dict[str, int]", False, {}),
    }
    base = forms.Base.__jacc_spec__
    assert (base.protocol, base.broadcast, base.public, base.is_async) == (
        "http", False, False, False)
    hidden = forms.Hidden.__jacc_spec__
    assert (hidden.public, [f.name for f in hidden.fields]) == (False, ["origin"])


def test_forms_hidden_runs_only_the_base_abilities(forms_module, tmp_path: Path) -> None:
    forms = forms_module
    assert jacc_runtime.run(forms.Hidden()) == ["base entry", "base exit"]


def test_forms_functions_and_globs(forms_module, tmp_path: Path) -> None:
    forms = forms_module
    assert (forms.LIMIT, forms.greeting, forms.shared) == (3, "hi", [])
    assert forms.collect(1, 2, sep="/", z=0) == "1/2/z=0"
    assert forms.square(5) == 25 and forms.square.cache_info().hits == 0
    assert forms.bump() == 1 and forms.bump(2) == 3
    assert forms.__doc__ == "Every statement and expression form of SPEC §2, in one program."


# ---------------------------------------------------------------- individual forms


@pytest.mark.parametrize(("statement", "expected"), [
    ("x = 10; x += 3;", 13), ("x = 10; x -= 3;", 7), ("x = 10; x *= 3;", 30),
    ("x = 10; x /= 4;", 2.5), ("x = 10; x //= 3;", 3), ("x = 10; x %= 3;", 1),
    ("x = 2; x **= 3;", 8), ("x = 1; x <<= 3;", 8), ("x = 8; x >>= 2;", 2),
    ("x = 6; x &= 3;", 2), ("x = 4; x |= 1;", 5), ("x = 6; x ^= 3;", 5),
])
def test_augmented_assignment(statement: str, expected) -> None:
    text = (f"\nwalker W {{\n    can a with entry {{\n        {statement}\n"
            "        report x;\n    }\n}\n")
    namespace: dict = {}
    exec(compile_source(text).code, namespace)
    assert jacc_runtime.run(namespace["W"]()) == [expected]


@pytest.mark.parametrize(("expr", "expected"), [
    ("-2 ** 2", -4), ("2 ** -1", 0.5), ("2 ** 3 ** 2", 512), ("not 1 == 2", True),
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("1 < 2 < 3", True), ("3 > 2 > 2", False),
    ("1 | 2 ^ 3 & 4", 3), ("1 << 2 + 1", 8), ("True or False and False", True),
    ("not True or True", True), ("1 if 0 else 2 if 0 else 3", 3), ("-~1", 2),
    ("[1, 2][-1]", 2), ("'abc'[::2]", "ac"), ("{'a': [1]}['a'][0]", 1),
    ("'a' not in 'bcd'", True), ("None is not None", False), ("7 // 2 * 2 % 5", 1),
])
def test_precedence_follows_python(expr: str, expected) -> None:
    assert eval(expr) == expected  # the case itself is right
    text = f"\nwalker W {{\n    can a with entry {{\n        report {expr};\n    }}\n}}\n"
    namespace: dict = {}
    exec(compile_source(text).code, namespace)
    assert jacc_runtime.run(namespace["W"]()) == [expected]


def test_await_binds_tighter_than_power() -> None:
    text = ("\nasync def two() -> int {\n    return 2;\n}\n"
            "async walker W {\n    async can a with entry {\n"
            "        report [await two() ** 3, -await two()];\n    }\n}\n")
    namespace: dict = {}
    exec(compile_source(text).code, namespace)
    assert jacc_runtime.run(namespace["W"]()) == [[8, -2]]


def test_for_loop_targets() -> None:
    text = ("\nwalker W {\n    can a with entry {\n        out = [];\n"
            "        for (i, (a, b)) in enumerate([(1, 2), (3, 4)]) {\n"
            "            out.append(i + a * b);\n        }\n"
            "        for x, y in [(5, 6)] {\n            out.append(x - y);\n        }\n"
            "        for first, *rest in [[1, 2, 3]] {\n            out.append(rest);\n        }\n"
            "        report out;\n    }\n}\n")
    namespace: dict = {}
    exec(compile_source(text).code, namespace)
    assert jacc_runtime.run(namespace["W"]()) == [[2, 13, -1, [2, 3]]]


def test_module_and_walker_docstrings() -> None:
    # Jac's rule: a docstring stands before what it documents; one inside a body that no
    # member follows documents nothing (W0003).
    text = '\n"""Module doc."""\n\n"""Walker doc."""\nwalker W {\n    """Inner doc."""\n}\n'
    module = parse_module(Source("app.jac", text))
    assert module.docstring == "Module doc."
    [walker] = module.body
    assert walker.docstring == "Walker doc."
    assert walker.stray_docs == (Span(6, 5, 6, 20),)


@pytest.mark.parametrize("text", ["\nimport asyncio;", "\nimport os, json;\n", "",
                                  "\n# only a comment\n", '\n"""Only a docstring."""\n'])
def test_files_with_nothing_but_imports_or_nothing_at_all(text: str) -> None:
    compiled = compile_source(text)
    compile(compiled.tree, "app.jac", "exec")


def test_fstring_self_documenting_expressions(import_built, tmp_path: Path) -> None:
    # Python's `{x=}`: the text as written, then repr (or the conversion / spec given).
    exprs = ['f"{x=}"', 'f"{x = !s:>4}"', 'f"{x=:>3}"', 'f"{x == 3}"', "f\"{ 's' = }\"",
             'f"a{1+1=}b"', 'f"{x!r}"']
    expected = [eval(e, {"x": 3}) for e in exprs]
    assert expected[0] == "x=3"
    source = tmp_path / "app.jac"
    source.write_text("\nwalker W {\n    can a with entry {\n        x = 3;\n"
                      f"        report [{', '.join(exprs)}];\n    }}\n}}\n", encoding="utf-8")
    built = import_built(build_file(source).path, "fstring_debug")
    assert jacc_runtime.run(built.W()) == [expected]
