"""Jac's scope rules (jacc/scopes.py, docs/language.md "Names"): an assignment in a
function, ability or lambda rebinds the nearest enclosing binding; a typed declaration,
loop target or `except` name makes a fresh local. Each program runs compiled in memory
and built, and must mean the same both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

import jacc_runtime
from jacc import nodes as n
from jacc.compiler import compile_source
from jacc.diagnostics import JacError
from jacc.parser import parse_module
from jacc.scopes import Bindings, resolve
from jacc.source import Source
from both import both


def _diagnostics(text: str) -> list:
    with pytest.raises(JacError) as info:
        compile_source(text)
    return info.value.diagnostics


# ---------------------------------------------------------------- globs rebound


# Each program rebinds the glob G from a function or ability: `probe()` reads it after.
REBINDING = {
    "assignment": "def act() { G = 51; }",
    "augmented": "def act() { G += 1; G *= 2; }",  # 102: no UnboundLocalError
    "tuple target": "def act() { (a, G) = (0, 7); }",
    "starred target": "def act() { (G, *rest) = [8, 9]; }",
    "chained": "def act() { x = G = 3; }",
    "inside blocks": "def act() { if True { for i in [1] { while G < 60 { G += 5; } } } }",
    "in try": "def act() { try { G = 11; } except Exception { G = 0; } }",
    "ability": "walker : pub A { can go with entry { G = 12; } }\ndef act() { A().go(); }",
    "method": "walker : pub M { def set() { G = 13; } }\ndef act() { M().set(); }",
    "lambda": "def act() { (lambda { G = 14; return G; })(); }",
    "lambda in a glob": "glob set = lambda (v: int) { G = v; };\ndef act() { set(15); }",
    "del": "def act() { del G; G = 16; }",
}
REBOUND = {
    "assignment": 51, "augmented": 102, "tuple target": 7, "starred target": 8,
    "chained": 3, "inside blocks": 60, "in try": 11, "ability": 12, "method": 13,
    "lambda": 14, "lambda in a glob": 15, "del": 16,
}


@pytest.mark.parametrize("case", sorted(REBINDING))
def test_an_assignment_in_a_function_rebinds_the_glob(case: str, tmp_path: Path) -> None:
    text = f"\nglob G = 50;\n{REBINDING[case]}\ndef probe() -> int {{ return G; }}\n"
    for module in both(text, tmp_path):
        module.act()
        assert module.probe() == REBOUND[case] == module.G, case


def test_the_counter_of_the_issue_counts(tmp_path: Path) -> None:
    text = ("\nglob counter = 0;\ndef bump() { counter += 1; }\n"
            "walker : pub W {\n    can go with entry {\n        bump(); bump();\n"
            "        counter += 10;\n        report counter;\n    }\n}\n")
    for module in both(text, tmp_path):
        assert jacc_runtime.run(module.W()) == [12]


# ---------------------------------------------------------------- fresh locals


SHADOWING = {
    "typed declaration": ("def act() -> int { G: int = 1; G += 1; return G; }", 2),
    "typed without value": ("def act() -> int { G: int; G = 3; return G; }", 3),
    "loop target": ("def act() -> int { for G in [4, 5] { } return G; }", 5),
    "tuple loop target": ("def act() -> int { for (G, b) in [(6, 0)] { } return G; }", 6),
    "except name": ("def act() -> str { try { raise KeyError('k'); } except KeyError as G "
                    "{ return type(G).__name__; } }", "KeyError"),
    "parameter": ("def act(G: int = 7) -> int { G += 1; return G; }", 8),
    "comprehension variable": ("def act() -> list { return [G for G in [9]]; }", [9]),
    "lambda parameter": ("def act() -> int { return (lambda (G: int) { G = G + 1; return G; })"
                         "(9); }", 10),
}


@pytest.mark.parametrize("case", sorted(SHADOWING))
def test_a_declaration_makes_a_fresh_local_and_leaves_the_glob(case: str, tmp_path: Path) -> None:
    body, expected = SHADOWING[case]
    text = f"\nglob G = 50;\n{body}\n"
    for module in both(text, tmp_path):
        assert module.act() == expected, case
        assert module.G == 50, case


@pytest.mark.parametrize("definition", [
    "import json;", "import from os { path as json }", "def json() {}", "walker json {}",
])
def test_only_globs_are_rebound_other_module_names_stay_python(definition: str,
                                                               tmp_path: Path) -> None:
    # An assignment to an import's, a function's or a walker's name makes a local.
    text = f"\n{definition}\ndef act() -> int {{ json = 5; return json; }}\n"
    for module in both(text, tmp_path):
        before = module.json
        assert module.act() == 5
        assert module.json is before


def test_a_name_nobody_binds_is_a_local(tmp_path: Path) -> None:
    text = "\ndef act() -> int { fresh = 1; fresh += 1; return fresh; }\n"
    for module in both(text, tmp_path):
        assert module.act() == 2
        assert not hasattr(module, "fresh")


# ---------------------------------------------------------------- lambdas rebind enclosing locals


def test_a_lambda_rebinds_its_enclosing_functions_local(tmp_path: Path) -> None:
    text = ("\nglob total = 100;\n"
            "def tally(xs: list) -> list {\n    total = 0;\n"
            "    add = lambda (x: int) { total += x; };\n"
            "    for x in xs { add(x); }\n    return [total, count()];\n}\n"
            "def count() -> int { return total; }\n")
    for module in both(text, tmp_path):
        # `total = 0;` in tally rebinds the glob; the lambda rebinds the same glob.
        assert module.tally([1, 2, 3]) == [6, 6]
        assert module.total == 6


def test_a_lambda_rebinds_a_local_of_the_function_around_it(tmp_path: Path) -> None:
    text = ("\ndef tally(xs: list) -> list {\n    seen: int = 0;\n"
            "    add = lambda (x: int) { seen += x; return seen; };\n"
            "    nested = lambda { inner = lambda { seen = -1; }; inner(); return seen; };\n"
            "    return [[add(x) for x in xs], seen, nested(), seen];\n}\n")
    for module in both(text, tmp_path):
        assert module.tally([1, 2]) == [[1, 3], 3, -1, -1]


def test_a_lambda_rebinds_a_parameter_and_a_loop_variable_around_it(tmp_path: Path) -> None:
    text = ("\ndef f(n: int) -> list {\n    bump = lambda { n += 1; };\n    bump(); bump();\n"
            "    out = [];\n    for i in [10] {\n        reset = lambda { i = 0; };\n"
            "        reset();\n        out.append(i);\n    }\n    return [n, out];\n}\n")
    for module in both(text, tmp_path):
        assert module.f(1) == [3, [0]]


def test_a_lambda_in_a_comprehension_sees_its_variable_late(tmp_path: Path) -> None:
    # Python's closures are late-binding: so are Jac's, multi-statement lambdas included.
    text = ("\ndef f() -> list {\n"
            "    made = [lambda { y = i * 10; return y; } for i in range(3)];\n"
            "    single = [lambda { i } for i in range(3)];\n"
            "    return [[g() for g in made], [g() for g in single]];\n}\n")
    for module in both(text, tmp_path):
        assert module.f() == [[20, 20, 20], [2, 2, 2]]


# ---------------------------------------------------------------- diagnostics


@pytest.mark.parametrize("body", [
    "x = G; G: int = 1;",
    "G += 1; G: int = 1;",
    "G: int = G + 1;",
    "for G in [G] { }",
    "print(G); for G in [1] { }",
    "try { } except Exception as G { } x = 1;",  # not before: no error (see below)
])
def test_a_shadowed_glob_used_before_its_declaration_is_e0404(body: str) -> None:
    text = f"\nglob G = 1;\ndef f() {{\n    {body}\n}}\n"
    if body.startswith("try"):
        compile_source(text)
        return
    codes = [d.code for d in _diagnostics(text)]
    assert codes and set(codes) == {"E0404"}, body


def test_an_enclosing_local_used_before_a_lambda_shadows_it_is_e0404() -> None:
    text = ("\ndef f() -> int {\n    n = 1;\n"
            "    g = lambda { m = n; n: int = 2; return m + n; };\n    return g();\n}\n")
    [diagnostic] = _diagnostics(text)
    assert (diagnostic.code, diagnostic.span.line, diagnostic.span.column) == ("E0404", 4, 22)


def test_uses_in_a_nested_lambda_are_not_uses_of_the_shadowing_scope() -> None:
    # The lambda reads the function's own `G` when it runs: after the declaration.
    text = "\nglob G = 1;\ndef f() -> int {\n    h = lambda { G };\n    G: int = 2;\n" \
           "    return h();\n}\n"
    namespace: dict = {}
    exec(compile_source(text).code, namespace)
    assert namespace["f"]() == 2


def test_the_legacy_global_statement_works_with_a_warning(tmp_path: Path) -> None:
    text = ("\nglob G = 1;\ndef f() -> int {\n    global G;\n    for G in [5] { }\n"
            "    return G;\n}\n")
    compiled = compile_source(text)
    assert [w.code for w in compiled.warnings] == ["W0002"]
    for module in both(text, tmp_path):  # Python's meaning, as written for earlier jacc
        assert module.f() == 5 and module.G == 5


def test_nonlocal_in_a_lambda_warns_and_elsewhere_is_an_error() -> None:
    ok = "\ndef f() -> int {\n    n = 1;\n    g = lambda { nonlocal n; n = 2; };\n" \
         "    g();\n    return n;\n}\n"
    compiled = compile_source(ok)
    assert [w.code for w in compiled.warnings] == ["W0002"]
    namespace: dict = {}
    exec(compiled.code, namespace)
    assert namespace["f"]() == 2
    bad = "\ndef f() {\n    nonlocal n;\n}\n"
    assert [d.code for d in _diagnostics(bad)] == ["E0003"]


# ---------------------------------------------------------------- the resolution itself


def _function(text: str) -> n.Function:
    [function] = parse_module(Source("app.jac", text)).body
    return function


def test_resolve_sorts_its_declarations_and_keeps_fresh_locals_apart() -> None:
    function = _function("\ndef f(p: int) { b = 1; a = 2; z: int = 3; for q in [] {} y = p; }\n")
    resolution = resolve(Bindings.of(function.params, function.body), [],
                         frozenset({"b", "a", "z"}))
    assert resolution.globals == ("a", "b")
    assert resolution.locals == {"p", "z", "q", "y"}
    assert set(resolution.shadowing) == {"z"}
    assert resolution.nonlocals == ()


def test_resolve_prefers_the_innermost_enclosing_binding() -> None:
    function = _function("\ndef f() { x = 1; y = 2; }\n")
    bindings = Bindings.of(function.params, function.body)
    resolution = resolve(bindings, [frozenset({"x"}), frozenset({"y"})], frozenset({"x", "y"}))
    assert resolution.nonlocals == ("x", "y") and resolution.globals == ()
