"""The custom lexer (`jacc.lexer`) against Lark's own basic lexer for the same grammar:
the same tokens, with the same types, values and positions, or the same error."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import UnexpectedCharacters

from jacc.lexer import JacLexer
from jacc.parser import _UNSUPPORTED_PREFIX, _grammar_text, _KeepUnsupported, _lark

ROOT = Path(__file__).parent.parent
FILES = sorted([*ROOT.glob("samples/*.jac"), *ROOT.glob("tests/cases/*.jac")])


@functools.cache
def _reference() -> Lark:
    """The grammar with Lark's basic lexer, keeping the same unsupported keywords."""
    grammar = _grammar_text()
    unsupported = tuple(re.findall(rf"^({_UNSUPPORTED_PREFIX}\w+)\s*:", grammar, re.M))
    return Lark(grammar, parser="lalr", lexer="basic", start=["start", "fstring_expr"],
                postlex=_KeepUnsupported(unsupported), maybe_placeholders=True)


def _fields(token) -> tuple:
    return (token.type, token.value, token.start_pos, token.line, token.column,
            token.end_line, token.end_column, token.end_pos)


def _lexed(tokens) -> tuple[list[tuple], tuple | None]:
    """The tokens, and where lexing stopped on a character no terminal matches."""
    found: list[tuple] = []
    try:
        for token in tokens:
            found.append(_fields(token))
    except UnexpectedCharacters as error:
        return found, (error.pos_in_stream, error.line, error.column)
    return found, None


def _ours(text: str) -> tuple[list[tuple], tuple | None]:
    return _lexed(JacLexer(_lark().lexer_conf).tokens(text))


def _lark_s(text: str) -> tuple[list[tuple], tuple | None]:
    return _lexed(_reference().lex(text))


def test_the_reference_is_lark_s_basic_lexer() -> None:
    assert _reference().options.lexer == "basic"
    assert _lark().options.lexer is JacLexer


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_lexes_as_lark_lexes_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    ours = _ours(text)
    assert ours == _lark_s(text)
    assert ours[0], "no tokens at all"


def test_the_files_cover_every_kind_of_token() -> None:
    # Keywords, operators, the unsupported words, and each patterned terminal.
    kinds = {kind for path in FILES for kind, *_ in _ours(path.read_text(encoding="utf-8"))[0]}
    assert {"NAME", "NUMBER", "STRING", "LONG_STRING", "WALKER", "LEGACY_ROOT", "POW_EQ",
            "COLON", "UNSUPPORTED_VISIT", "UNSUPPORTED_EDGE_R"} <= kinds


@pytest.mark.parametrize("text", [
    "", "\n", "x", "#* a\nblock *# x", "# only a comment", "a\r\nb", "'''x\ny''' z",
    'f"{x!r:>{w}}" rb"\\d"', "1_000 0x_1f 1e-3j .5 5.", "**= **  * ->", "`root `x",
    "<++> <-- -->", "é😀", "$", "x = 'open", "\x0c\x0b", "a\u2028b",
])
def test_edge_cases_lex_as_lark_lexes_them(text: str) -> None:
    assert _ours(text) == _lark_s(text)


@st.composite
def _mutated_file(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(FILES)).read_text(encoding="utf-8")
    at = draw(st.integers(0, len(text)))
    end = draw(st.integers(at, min(len(text), at + 40)))
    return text[:at] + draw(st.text(max_size=8)) + text[end:]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_file())
def test_mutated_files_lex_as_lark_lexes_them(text: str) -> None:
    assert _ours(text) == _lark_s(text)
