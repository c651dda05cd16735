"""The Lark parser, built once; Lark's errors become diagnostics.

The grammar is parsed with LALR and the `Lower` transformer runs inside the
parser, so parsing yields `nodes` directly (about three times faster than
building a parse tree and transforming it afterwards). Lark builds (and caches)
the tables; `jacc.lalr` runs them, and Lark's own driver runs only on a syntax
error, to raise the error the diagnostics are made from.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

from lark import Lark, Token
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import nodes as n
from .diagnostics import Diagnostic, JacError
from .lalr import Driver, Rejected
from .lexer import JacLexer
from .literals import FStringError
from .lower import Lower, _span_of
from .source import Source, Span

_UNSUPPORTED_PREFIX = "UNSUPPORTED_"


class _KeepUnsupported:
    """A pass-through post-lexer. Lark drops terminals that no rule uses; naming
    the unsupported keywords in `always_accept` keeps them in the lexer."""

    def __init__(self, terminals: tuple[str, ...]) -> None:
        self.always_accept = terminals

    def process(self, stream):
        return stream


def _grammar_text() -> str:
    return resources.files("jacc.grammar").joinpath("jac.lark").read_text(encoding="utf-8")


@functools.cache
def _lark() -> Lark:
    grammar = _grammar_text()
    unsupported = tuple(re.findall(rf"^({_UNSUPPORTED_PREFIX}\w+)\s*:", grammar, re.M))
    return Lark(
        grammar,
        parser="lalr",
        lexer=JacLexer,
        start=["start", "fstring_expr"],
        transformer=Lower(_parse_fstring_expr),
        postlex=_KeepUnsupported(unsupported),
        maybe_placeholders=True,
        cache=True,
    )


@functools.cache
def _lexer() -> JacLexer:
    return JacLexer(_lark().lexer_conf)


@functools.cache
def _driver() -> Driver:
    return Driver(_lark(), _lexer(), _lark().options.transformer)


def _parse(text: str, start: str) -> Any:
    """What `Lark.parse` returns for `text`, or the `UnexpectedInput` it raises."""
    try:
        return _driver().parse(text, start)
    except Rejected:
        pass
    _lark().parse(text, start=start)  # raises the error the diagnostics are made from
    raise AssertionError("jacc.lalr rejected a text that Lark's parser accepts")


def _parse_fstring_expr(text: str) -> Any:
    try:
        return _parse(text, "fstring_expr")
    except LarkError:
        raise FStringError("f-string: invalid expression") from None


def parse_module(source: Source) -> n.Module:
    """Parse a whole file into a `Module`; raise `JacError` on a syntax error."""
    try:
        return _parse(source.text, "start")
    except UnexpectedInput as error:
        raise JacError(source, _syntax_diagnostics(source, error)) from None


# ---------------------------------------------------------------- diagnostics


def _syntax_diagnostics(source: Source, error: UnexpectedInput) -> list[Diagnostic]:
    diagnostics = _unsupported_tokens(source)
    token = getattr(error, "token", None)
    if isinstance(token, Token) and token.type.startswith(_UNSUPPORTED_PREFIX):
        return diagnostics  # already named as unsupported
    diagnostics.append(_syntax_diagnostic(source, error))
    return diagnostics


def _unsupported_tokens(source: Source) -> list[Diagnostic]:
    """Every unsupported Jac construct in the file, not only the one parsing stopped at."""
    found = []
    try:
        for token in _lexer().tokens(source.text):
            if token.type.startswith(_UNSUPPORTED_PREFIX):
                found.append(unsupported(token, Span.of_token(token)))
    except LarkError:
        pass  # a bad character: the syntax diagnostic says where
    return found


def unsupported(what: str, span: Span) -> Diagnostic:
    return Diagnostic("E0901", f"`{what}` is not supported by jacc", span,
                      help="jacc compiles walkers only; see the supported subset in the docs")


def _syntax_diagnostic(source: Source, error: UnexpectedInput) -> Diagnostic:
    if isinstance(error, UnexpectedCharacters):
        char = source.text[error.pos_in_stream] if error.pos_in_stream < len(source.text) else ""
        span = Span(error.line, error.column, error.line, error.column)
        if char in "\"'":
            return Diagnostic("E0002", "unterminated string literal", span)
        return Diagnostic("E0001", f"unexpected character `{char}`", span)
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        acceptable = _acceptable(error)
        expected = _describe_expected(acceptable)
        span = Span.of_token(error.token)
        if error.token.type == "DEF" and "RBRACE" in acceptable:
            return Diagnostic("E0901", "a `def` inside a function or ability is not supported by "
                              "jacc", span, help="define the function at module level or as a "
                              "method of the walker")
        operator = _previous_operator(error)
        if operator is not None and error.token.type == "NOT":
            return Diagnostic("E0001", f"`not` cannot follow `{operator}`", span,
                              help=f"as in Python, `not` binds more loosely than `{operator}`: "
                              "put the `not` and its operand in parentheses, `(not ...)`")
        if operator == "await":
            return Diagnostic("E0001", f"expected an expression to await, found "
                              f"`{error.token}`", span,
                              help="as in Python, `await` stands right before a name, a call, "
                              "an attribute or an expression in parentheses")
        if "NAME" in error.expected and _is_keyword(error.token):
            return Diagnostic("E0001", f"`{error.token}` is a keyword and cannot be used as a name",
                              span, help=f"rename it, for example `{error.token}_`")
        found = str(error.token).splitlines()[0] if str(error.token) else error.token.type
        if "SEMICOLON" in acceptable and _starts_a_body_with_a_string(error):
            return Diagnostic("E0001", f"expected `;`, found `{found}`",
                              _after_previous(error) or span,
                              help="a string at the start of a body is no docstring in Jac, "
                              "but a statement like any other: Jac docstrings stand before "
                              "what they document, so move it above the declaration")
        if "LBRACE" in acceptable and _in_a_lambda_head(error):
            return Diagnostic("E0001", f"expected {expected}, found `{found}`", span,
                              help="a Jac lambda puts its parameters in parentheses and its "
                              "body in braces: `lambda (x: int) { x + 1; }`")
        if expected == "`;`":
            # Point where the `;` belongs, right after what came before, like rustc.
            span = _after_previous(error) or span
        return Diagnostic("E0001", f"expected {expected}, found `{found}`", span,
                          help=_help_for(acceptable))
    expected = _describe_expected(getattr(error, "expected", set()) or set())
    line_count = source.text.count("\n") + 1
    last = source.line(line_count)
    span = Span(line_count, len(last) + 1, line_count, len(last) + 1)
    return Diagnostic("E0001", f"unexpected end of file, expected {expected}", span)


def _acceptable(error: UnexpectedToken) -> set[str]:
    """The tokens that really could come next.

    LALR merges states, so `error.expected` lists tokens that only some merged
    context accepts; trying each one on a copy of the parser gives the exact set.
    """
    try:
        accepted = error.interactive_parser.accepts()
    except Exception:  # noqa: BLE001 - an approximation is fine for a message
        return set(error.expected)
    return accepted or set(error.expected)


def _after_previous(error: UnexpectedToken) -> Span | None:
    """The column just after the last thing the parser accepted."""
    stack = getattr(getattr(error, "state", None), "value_stack", None)
    previous = _span_of(stack[-1]) if stack else None
    if previous is None:
        return None
    line, column = previous.end_line, previous.end_column + 1
    return Span(line, column, line, column)


# Operators an operand follows (`not` may follow only `and`, `or` and `not`).
_OPERATORS = frozenset({
    "LT", "GT", "EQ", "GE", "LE", "NE", "IN", "IS", "NOT", "BAR", "CARET", "AMP", "LSHIFT",
    "RSHIFT", "PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT", "AT", "POW", "TILDE",
    "AWAIT",
})


def _previous_operator(error: UnexpectedToken) -> str | None:
    """The operator just before the unexpected token: `is not` for `x is not not y`."""
    stack = getattr(getattr(error, "state", None), "value_stack", None) or []
    last = stack[-1] if stack else None
    if not (isinstance(last, Token) and last.type in _OPERATORS):
        return None
    before = stack[-2] if len(stack) > 1 else None
    if last.type == "NOT" and isinstance(before, Token) and before.type == "IS":
        return "is not"
    if last.type == "IN" and isinstance(before, Token) and before.type == "NOT":
        return "not in"
    return str(last)


def _starts_a_body_with_a_string(error: UnexpectedToken) -> bool:
    """Whether parsing stopped just after a string that opens a block: a Python-style
    docstring, `def f() { "Doc." return 1; }`."""
    stack = getattr(getattr(error, "state", None), "value_stack", None) or []
    if len(stack) < 2:
        return False
    string, before = stack[-1], stack[-2]
    return isinstance(string, n.Constant) and isinstance(string.value, str) \
        and isinstance(before, Token) and before.type == "LBRACE"


def _in_a_lambda_head(error: UnexpectedToken) -> bool:
    """Whether parsing stopped between `lambda` and the `{` of its body."""
    stack = getattr(getattr(error, "state", None), "value_stack", None) or []
    return any(isinstance(item, Token) and item.type == "LAMBDA" for item in stack[-6:])


def _is_keyword(token: Token) -> bool:
    return str(token).isidentifier() and token.type != "NAME"


def _terminal_text(name: str) -> str:
    if name == "$END":
        return "end of file"
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if pattern.type == "str":
        return f"`{pattern.value}`"
    return {"NAME": "a name", "STRING": "a string", "LONG_STRING": "a string",
            "NUMBER": "a number"}.get(name, name.lower())


# Terminals worth naming first when the parser expects many things.
_SALIENT = ("SEMICOLON", "RBRACE", "LBRACE", "RPAR", "RSQB", "COLON", "$END")


def _describe_expected(expected: set[str]) -> str:
    names = {name for name in expected if not name.startswith(_UNSUPPORTED_PREFIX)}
    salient = [name for name in _SALIENT if name in names]
    if salient:
        texts = [_terminal_text(name) for name in salient[:3]]
    else:
        texts = sorted({_terminal_text(name) for name in names})
    if not texts:
        return "something else"
    if len(texts) > 8:
        return "one of " + ", ".join(texts[:8]) + ", ..."
    return texts[0] if len(texts) == 1 else "one of " + ", ".join(texts)


def _help_for(expected: set[str]) -> str | None:
    if "SEMICOLON" in expected:
        return "Jac statements end with `;`"
    return None
