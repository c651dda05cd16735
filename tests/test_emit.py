"""The text of a built module (`jacc.emit`): `ast.unparse` of the module, character
for character, and the line table that reading the text back gives, without
reading it back. On every program of the corpus that compiles and on generated ones."""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings

from jacc import emit
from jacc.compiler import Compiled
from test_properties import CORPUS, SCALE, compile_or_diagnose, random_program

COMPILED = [c for c in map(compile_or_diagnose, CORPUS) if isinstance(c, Compiled)]


def assert_same_as_reparse(tree: ast.Module) -> None:
    text, table = emit.unparse_with_lines(tree, first_line=3)
    assert text == ast.unparse(tree)
    assert table == emit.line_table_by_reparse(tree, "#\n#\n" + text + "\n")


def test_the_corpus_has_programs_to_build() -> None:
    assert len(COMPILED) >= 5


@pytest.mark.parametrize("compiled", COMPILED, ids=range(len(COMPILED)))
def test_the_line_table_is_the_one_reading_the_text_back_gives(compiled: Compiled) -> None:
    assert_same_as_reparse(compiled.tree)


@pytest.mark.parametrize("compiled", COMPILED[:3], ids=range(3))
def test_without_the_unparser_class_the_text_is_the_same(
    compiled: Compiled, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fallback for a Python without `ast._Unparser`: unparse, then read back.
    fast = emit.module_source(compiled.tree, "app.jac")
    monkeypatch.setattr(emit, "_Base", None)
    assert emit.module_source(compiled.tree, "app.jac") == fast


def test_elif_chains_and_docstrings_are_placed() -> None:
    # The statements `ast.unparse` writes without visiting them as statements.
    tree = ast.parse('"""m"""\nclass C:\n    """c"""\n    def f(self):\n        """f"""\n'
                     "        if a:\n            pass\n        elif b:\n            pass\n"
                     "        elif c:\n            if d:\n                pass\n"
                     "            elif e:\n                pass\n        else:\n"
                     "            pass\n")
    assert_same_as_reparse(tree)
    assert len(emit.unparse_with_lines(tree)[1]) == 15  # every statement, each on a line


@pytest.mark.slow
@settings(max_examples=200 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_program())
def test_generated_programs_get_the_line_table_reading_back_gives(text: str) -> None:
    compiled = compile_or_diagnose(text)
    if isinstance(compiled, Compiled):
        assert_same_as_reparse(compiled.tree)


def _nested_calls(depth: int) -> ast.Module:
    """`x = f(f(...f(1)...))`, built as a tree: past 200 it is no Python text."""
    value: ast.expr = ast.Constant(1)
    for _ in range(depth):
        value = ast.Call(ast.Name("f", ast.Load()), [value], [])
    module = ast.Module([ast.Assign([ast.Name("x", ast.Store())], value)], [])
    return ast.fix_missing_locations(module)


@pytest.mark.parametrize("depth", [5, 60, 150])
def test_only_text_nested_near_python_s_limits_is_read_back(depth: int, monkeypatch) -> None:
    read_back = []
    real = emit.line_table_by_reparse
    monkeypatch.setattr(emit, "line_table_by_reparse",
                        lambda tree, text: read_back.append(1) or real(tree, text))
    tree = _nested_calls(depth)
    text = emit.module_source(tree, "app.jac")
    assert bool(read_back) == (depth > emit._READABLE_DEPTH)
    assert ast.unparse(tree) in text


def test_text_python_cannot_read_is_refused() -> None:
    # 250 nested brackets: beyond CPython's tokenizer (jacc.depth.MAX_BRACKETS).
    with pytest.raises(emit.UnwritableModule, match="nested brackets"):
        emit.module_source(_nested_calls(250), "app.jac")
