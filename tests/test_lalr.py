"""The LALR driver (`jacc.lalr`) against Lark's own driver, on the same tables:
the same lowered nodes, the same tree (tokens with every position), or a
rejection where Lark raises, at the same token. On every file under tests/ and
samples/, on the generated programs of test_properties, and on a small grammar
of its own that uses each of Lark's ways of shaping a tree."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from jacc import parser
from jacc.diagnostics import JacError
from jacc.lalr import Driver, Rejected
from jacc.lexer import BAD, JacLexer
from jacc.source import Span
from test_properties import (CORPUS, SCALE, mutation, random_program, splice, token_soup,
                             truncation)

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(
    path for folder in ("tests", "samples") for path in (ROOT / folder).rglob("*")
    if path.is_file() and "node_modules" not in path.parts and "__pycache__" not in path.parts
    and path.suffix not in (".png", ".pyc")
)


def _outcome(run: Any) -> tuple:
    """What a parse gave: its value spelled out, or where it stopped."""
    try:
        return ("value", _spelled_out(run()))
    except Rejected as rejected:
        return ("rejected", rejected.kind, None if rejected.kind == "$END" else rejected.position)
    except UnexpectedCharacters as error:
        return ("rejected", BAD, error.pos_in_stream)
    except UnexpectedToken as error:
        # Lark places `$END` at the last token; the driver at the end of the text.
        kind = error.token.type
        return ("rejected", kind, None if kind == "$END" else error.token.start_pos)


def _spelled_out(value: Any) -> list:
    """Nodes, trees and tokens as a flat list, walked without recursion (a program may
    nest thousands deep, jacc.depth); tokens with every position (Token's `==`
    compares only the text)."""
    out: list = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Token):
            out.append(("token", item.type, item.value, item.start_pos, item.line, item.column,
                        item.end_line, item.end_column, item.end_pos))
        elif isinstance(item, Tree):
            out.append(("tree", item.data, len(item.children)))
            pending.extend(reversed(item.children))
        elif isinstance(item, (list, tuple)) and not isinstance(item, Span):
            out.append((type(item).__name__, len(item)))
            pending.extend(reversed(item))
        elif dataclasses.is_dataclass(item):
            fields = [getattr(item, f.name) for f in dataclasses.fields(item)]
            out.append((type(item).__name__, len(fields)))
            pending.extend(reversed(fields))
        else:
            out.append((type(item).__name__, item))
    return out


# ---------------------------------------------------------------- the Jac grammar


@functools.cache
def _tree_parser() -> tuple[Lark, Driver]:
    """Jac's grammar without the transformer: Lark's trees, token by token."""
    lark = parser._lark()
    plain = Lark(parser._grammar_text(), parser="lalr", lexer=JacLexer,
                 start=["start", "fstring_expr"], postlex=lark.options.postlex,
                 maybe_placeholders=True, cache=True)
    return plain, Driver(plain, JacLexer(plain.lexer_conf))


def assert_same_as_lark(text: str, start: str = "start") -> tuple:
    """Lowered nodes and plain trees, both ways; returns the lowered outcome."""
    lowered = _outcome(lambda: parser._driver().parse(text, start))
    assert lowered == _outcome(lambda: parser._lark().parse(text, start=start))
    plain, driver = _tree_parser()
    trees = _outcome(lambda: driver.parse(text, start))
    assert trees == _outcome(lambda: plain.parse(text, start=start))
    assert (lowered[0] == "value") == (trees[0] == "value")
    return lowered


def assert_same_diagnostics(text: str) -> None:
    """Through `parse_module`: Lark's own error when the driver rejects."""
    source = parser.Source("app.jac", text)
    try:
        ours = ("module", _spelled_out(parser.parse_module(source)))
    except JacError as error:
        ours = ("error", [d.as_json() for d in error.diagnostics])
    try:
        theirs = ("module", _spelled_out(parser._lark().parse(text, start="start")))
    except UnexpectedInput as error:
        diagnostics = JacError(source, parser._syntax_diagnostics(source, error)).diagnostics
        theirs = ("error", [d.as_json() for d in diagnostics])
    assert ours == theirs


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_parses_as_lark_parses_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    outcome = assert_same_as_lark(text)
    if path.suffix == ".jac" and "cases" not in path.parts:
        assert outcome[0] == "value", outcome  # the samples and apps are valid Jac
    assert_same_diagnostics(text)


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_every_program_of_the_corpus_parses_as_lark_parses_it(text: str) -> None:
    assert_same_as_lark(text)
    assert_same_diagnostics(text)
    for cut in range(0, len(text), max(1, len(text) // 40)):  # and its prefixes
        assert_same_as_lark(text[:cut])


@pytest.mark.parametrize("text", [
    "", " ", "\n", "# only a comment", "#* open", "walker", "walker W {", "walker W {}",
    "walker W {} $", "$", "x = 1;", "'''", '"', "`root", "glob x = 1", "glob x = 1;   \n  ",
    "import from a { b }", "walker W { can go with entry { report f\"{x!r:>{w}}\"; } }",
])
def test_edge_cases_parse_as_lark_parses_them(text: str) -> None:
    assert_same_as_lark(text)
    assert_same_diagnostics(text)


@pytest.mark.parametrize("text", ["x", "x, y", "a if b else c", "f(*x, **y)[1:2]", "", "x;",
                                  "{", "x +", "lambda: 1", "yield"])
def test_fstring_expressions_parse_as_lark_parses_them(text: str) -> None:
    assert_same_as_lark(text, start="fstring_expr")


def _differential(examples: int) -> settings:
    return settings(max_examples=examples * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.slow
@_differential(300)
@given(st.one_of(token_soup(), truncation(), splice(), mutation(), st.text(max_size=200)))
def test_generated_texts_parse_as_lark_parses_them(text: str) -> None:
    assert_same_as_lark(text)
    assert_same_diagnostics(text)


@pytest.mark.slow
@_differential(300)
@given(random_program())
def test_generated_programs_parse_as_lark_parses_them(text: str) -> None:
    assert_same_as_lark(text)
    assert_same_diagnostics(text)


@pytest.mark.slow
@_differential(3)
@given(st.lists(random_program(sloppy=False), min_size=20, max_size=20))
def test_the_careful_generated_programs_mostly_parse(texts: list[str]) -> None:
    # So that the property above compares trees, not only rejections (some do not
    # parse, such as `0.real`: `0.` is a number).
    assert sum(assert_same_as_lark(text)[0] == "value" for text in texts) >= 10


# ---------------------------------------------------------------- a grammar of its own

# Every way Lark shapes what a callback gets: `?rule` (one child handed on), `_rule`
# (children spliced), `!rule` (punctuation kept), `[x]` (None when absent), `x?`
# (nothing when absent), aliases, templates, named and anonymous terminals, left
# recursion, empty rules, `_rule`s of one child inside `?rule`s (`chain`: the driver
# folds their reductions), and a transformer that has some callbacks and not others.
# JacLexer reads the terminals that jacc's grammar has, so this one has them too.
SHAPES = r"""
start: item*
?item: NAME "=" value ";"          -> assign
     | "!" keep
     | _pair ";"
     | "list" [value] ("," value)* ";"
     | pair{NAME, NUMBER}
     | "nothing" ";"               -> nothing
     | "maybe" value? ";"
     | "chain" chain ";"
!keep: NAME "(" ")" ";"
?chain: _links ("or" _links)*
_links: "not"* _link ("and" _link)*
_link: "-"? atom
_pair: NAME ":" value
?value: sum
?sum: atom (_op atom)*
_op: PLUS | MINUS
?atom: NUMBER | STRING | LONG_STRING | NAME | "(" value ")" | _empty
_empty: "(" ")"
pair{key, val}: key "~" val ";"
PLUS: "+"
MINUS: "-"
NAME: /[^\W\d]\w*/
NUMBER: /\d+/
STRING: /"[^"\n]*"/
LONG_STRING: /'''(.|\n)*?'''/
COMMENT: /#[^\n]*/
WS: /[ \t\n]+/
%ignore WS
%ignore COMMENT
"""

SHAPE_TEXTS = [
    "", "x = 1;", "x = 1 + 2 - y;", "x = (1);", "x = ();", "! f();", "a: 1;", "list;",
    "list 1, 2, 3;", "list 1;", "k ~ 2;", "nothing;", "maybe;", "maybe 1;", "x = \"s\";",
    "x = '''a\nb''';", "x = 1;\n# c\n  y = 2 + 3 + 4;", "x = ;", "x = 1", "! f(;", "@", "list ,;",
    "chain 1;", "chain (1);", "chain 1 and 2;", "chain not 1;", "chain 1 or 2;", "chain - 1;",
    "chain not not 1 and - 2 or 3 and 4 or 5;", "chain 1 or;", "chain and 1;",
]


class _Some(Transformer):
    """Callbacks for some rules only; the others get Lark's default (a tree)."""

    def assign(self, items: list) -> tuple:
        return ("assign", *items)

    @v_args(inline=True)
    def pair(self, key: Any, value: Any) -> tuple:
        return ("pair", key, value)

    def nothing(self, items: list) -> str:
        return "nothing"


@pytest.mark.parametrize("placeholders", [True, False])
@pytest.mark.parametrize("transformer", [None, _Some()], ids=["trees", "callbacks"])
@pytest.mark.parametrize("text", SHAPE_TEXTS)
def test_a_grammar_of_every_shape_parses_as_lark_parses_it(
    text: str, transformer: Transformer | None, placeholders: bool,
) -> None:
    lark = Lark(SHAPES, parser="lalr", lexer=JacLexer, maybe_placeholders=placeholders,
                transformer=transformer)
    driver = Driver(lark, JacLexer(lark.lexer_conf), transformer)
    ours = _outcome(lambda: driver.parse(text, "start"))
    assert ours == _outcome(lambda: lark.parse(text))


def test_the_grammar_of_every_shape_is_parsed_at_all() -> None:
    lark = Lark(SHAPES, parser="lalr", lexer=JacLexer, maybe_placeholders=True)
    driver = Driver(lark, JacLexer(lark.lexer_conf))
    parsed = [_outcome(lambda t=t: driver.parse(t, "start"))[0] for t in SHAPE_TEXTS]
    # All but the seven written wrong: `x = ;`, `x = 1`, `! f(;`, `@`, `list ,;`, `chain 1 or;`
    # and `chain and 1;`.
    assert parsed.count("value") == len(SHAPE_TEXTS) - 7
    # And the reductions the driver folds are there to fold.
    assert {move for _, _, move in driver._chains.values()} == {"same", "wrap", "pass"}
    assert driver._unwraps


def test_terminal_callbacks_are_refused() -> None:
    class Tokens(Transformer):
        def NAME(self, token: Token) -> str:
            return token.upper()

    lark = Lark(SHAPES, parser="lalr", lexer=JacLexer, transformer=Tokens())
    with pytest.raises(ValueError, match="terminal callbacks"):
        Driver(lark, JacLexer(lark.lexer_conf), Tokens())
