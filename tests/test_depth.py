"""Deep code (jacc/depth.py, docs/language.md "Deep code"): what CPython compiles, jacc
compiles, in memory and built; past that, E0004 where the nesting goes too deep, and
never a traceback."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import jacc_runtime
from jacc.codegen import UnwritableModule, module_source
from jacc.compiler import build_file, compile_source
from jacc.depth import MAX_BLOCKS, MAX_DEPTH
from jacc.diagnostics import JacError
from both import both


def _function(body: str) -> str:
    return f"\ndef f(x: int, y: list) -> any {{\n{body}\n}}\n"


def _chain(terms: int) -> str:
    return " + ".join(["1"] * terms)


def _elifs(branches: int) -> str:
    return ("    if x == 0 { return 0; }" +
            "".join(f" elif x == {i} {{ return {i}; }}" for i in range(1, branches)) +
            "\n    return -1;")


def _nested(opening: str, inner: str, depth: int) -> str:
    return opening * depth + inner + " }" * depth


# The sizes that crashed jacc (exit 2), as the issue gives them, and what each returns.
ISSUE_SIZES = {
    "chain of 323 terms": (_function(f"    return {_chain(323)};"), 323),
    "327 elif branches": (_function(_elifs(327)), 1),
    "if nested 98 deep": (_function(_nested("if x { ", "return 98;", 98) + "\n return 0;"), 98),
    "lists nested 200 deep": (_function("    return " + "[" * 200 + "]" * 200 + ";"),
                              "[" * 200 + "]" * 200),
    "calls nested 200 deep": (_function("    return " + "abs(" * 200 + "-1" + ")" * 200 + ";"),
                              1),
    "comprehension of 246 for clauses": (_function(
        "    return [1 " + " ".join(f"for a{i} in y" for i in range(246)) + "];"), [1]),
}


@pytest.mark.parametrize("case", sorted(ISSUE_SIZES))
def test_the_sizes_of_the_issue_compile_and_build(case: str, tmp_path: Path) -> None:
    text, expected = ISSUE_SIZES[case]
    for module in both(text, tmp_path):
        value = module.f(1, [0])
        assert (repr(value).replace(" ", "") if isinstance(expected, str) else value) == expected


def test_for_nested_246_deep_is_e0004_as_python_allows_20(tmp_path: Path) -> None:
    text = _function(_nested("for i in y { ", "return 1;", 246) + "\n return 0;")
    with pytest.raises(JacError) as info:
        compile_source(text)
    [diagnostic] = info.value.diagnostics
    assert diagnostic.code == "E0004" and f"limit {MAX_BLOCKS}" in diagnostic.message
    assert diagnostic.span.line == 3  # the 21st loop, on the function's one line
    source = tmp_path / "app.jac"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(JacError):
        build_file(source)


def test_twenty_nested_loops_compile(tmp_path: Path) -> None:
    text = _function(_nested("for i in y { ", "return i;", MAX_BLOCKS) + "\n return 0;")
    for module in both(text, tmp_path):
        assert module.f(0, [7]) == 7


@pytest.mark.parametrize("shape", ["chain", "elif", "lists", "minus", "not", "power",
                                   "attributes", "conditional", "lambdas"])
def test_up_to_the_limit_compiles_and_one_more_is_e0004(shape: str) -> None:
    # Each shape at the depth the checker counts: the limit compiles, one more does not.
    def source(depth: int) -> str:
        body = {
            "chain": f"return {_chain(depth - 2)};",
            "elif": _elifs(depth - 3),
            "lists": "return " + "[" * (depth - 3) + "]" * (depth - 3) + ";",
            "minus": "return " + "-" * (depth - 3) + "1;",
            "not": "return " + "not " * (depth - 3) + "1;",
            "power": "return " + " ** ".join(["1"] * (depth - 2)) + ";",
            "attributes": "return x" + ".real" * (depth - 3) + ";",
            "conditional": "return " + "1 if x else " * (depth - 3) + "2;",
            "lambdas": "return " + "lambda { " * ((depth - 3) // 2) + "1" +
                       " }" * ((depth - 3) // 2) + ";",
        }[shape]
        return _function("    " + body)

    compile_source(source(MAX_DEPTH))
    with pytest.raises(JacError) as info:
        compile_source(source(MAX_DEPTH + 2))
    [diagnostic] = info.value.diagnostics
    assert diagnostic.code == "E0004" and f"limit {MAX_DEPTH}" in diagnostic.message
    assert diagnostic.span.line == 3


@pytest.mark.parametrize("shape", ["chain", "lists", "minus", "power", "elif", "targets"])
def test_far_past_the_limit_is_a_diagnostic_not_a_traceback(shape: str) -> None:
    depth = 10_000  # more than three times the limit
    body = {
        "chain": f"return {_chain(depth)};",
        "lists": "return " + "[" * depth + "]" * depth + ";",
        "minus": "return " + "-" * depth + "1;",
        "power": "return " + " ** ".join(["1"] * depth) + ";",
        "elif": _elifs(depth),
        "targets": "(" * depth + "a," + ")," * (depth - 1) + ") = y;",  # ((a,),) = y;
    }[shape]
    with pytest.raises(JacError) as info:
        compile_source(_function("    " + body))
    assert [d.code for d in info.value.diagnostics] == ["E0004"]


def test_a_build_deeper_than_python_source_allows_is_e0004_and_located(tmp_path: Path) -> None:
    # In memory, 250 nested lists compile; as source text CPython reads 200 brackets.
    text = ("\nwalker : pub W {\n    can go with entry {\n        x = 1;\n"
            "        report " + "[" * 250 + "]" * 250 + ";\n    }\n}\n")
    [in_memory] = [compile_source(text)]
    namespace: dict = {}
    exec(in_memory.code, namespace)
    assert len(jacc_runtime.run(namespace["W"]())) == 1
    with pytest.raises(UnwritableModule) as info:
        module_source(in_memory.tree, "app.jac")
    diagnostic = info.value.diagnostic
    assert diagnostic.code == "E0004" and "200 nested brackets" in diagnostic.message
    assert diagnostic.span.line == 5
    source = tmp_path / "app.jac"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(JacError) as built:
        build_file(source)
    assert built.value.diagnostics == [diagnostic]


def test_a_build_indented_deeper_than_python_source_allows_is_e0004(tmp_path: Path) -> None:
    # An ability's body is two levels in (class, method): 98 nested `if` make 100.
    ifs = _nested("if x { ", "report 1;", 98)
    text = ("\nwalker : pub W {\n    can go with entry {\n        x = 1;\n"
            f"        {ifs}\n    }}\n}}\n")
    compiled = compile_source(text)
    with pytest.raises(UnwritableModule) as info:
        module_source(compiled.tree, "app.jac")
    assert "indentation" in info.value.diagnostic.message
    assert info.value.diagnostic.span.line == 5


def test_the_cli_exits_1_on_deep_code(tmp_path: Path) -> None:
    source = tmp_path / "deep.jac"
    source.write_text(_function(f"    return {_chain(3 * MAX_DEPTH)};"), encoding="utf-8")
    for command in ("check", "build"):
        result = subprocess.run([sys.executable, "-m", "jacc", command, str(source)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr
        assert "error[E0004]" in result.stderr and "Traceback" not in result.stderr


def test_a_built_module_at_the_limit_imports_in_a_fresh_python(tmp_path: Path) -> None:
    # CPython's compiler takes about 2990 levels from the top of the stack: jacc's 2900
    # leave room for an import some frames deep.
    source = tmp_path / "deep.jac"
    source.write_text("\nwalker : pub W {\n    can go with entry {\n        report "
                      f"{_chain(MAX_DEPTH - 3)};\n    }}\n}}\n", encoding="utf-8")
    build_file(source)
    result = subprocess.run(
        [sys.executable, "-c", "import deep, jacc_runtime; print(jacc_runtime.run(deep.W()))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == f"[{MAX_DEPTH - 3}]", result.stderr


def test_the_recursion_limit_is_put_back(tmp_path: Path) -> None:
    before = sys.getrecursionlimit()
    compile_source(_function(f"    return {_chain(500)};"))
    with pytest.raises(JacError):
        compile_source(_function(f"    return {_chain(MAX_DEPTH * 2)};"))
    assert sys.getrecursionlimit() == before


def test_deep_code_compiles_in_threads_at_once() -> None:
    text = _function(f"    return {_chain(MAX_DEPTH - 10)};")
    results: list = []

    def compile_it() -> None:
        namespace: dict = {}
        exec(compile_source(text).code, namespace)
        results.append(namespace["f"](0, []))

    threads = [threading.Thread(target=compile_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [MAX_DEPTH - 10] * 4
