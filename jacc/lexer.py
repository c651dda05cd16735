"""A fast lexer for the Jac grammar, plugged into Lark as a custom lexer.

Lark's own basic lexer spends about 10 µs a token in Python bookkeeping; this
one matches the whole vocabulary with a single master regular expression and
looks keywords up in a dict, about four times faster. Its vocabulary is read
from the grammar's terminals, so grammar/jac.lark stays the one definition.

`jacc.lalr` runs the same master expression inside its parse loop; the token
stream below is what Lark's own parser is fed (for error diagnostics).
"""

from __future__ import annotations

import re
from typing import Iterator

from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer, LexerState, Token

# Terminals defined by a regular expression, in the order they are tried; the
# skipped ones first. Everything else in the grammar is a literal: a keyword or
# an operator.
_SKIPPED = ("COMMENT", "WS")
_PATTERNED = ("LONG_STRING", "STRING", "NUMBER", "NAME")
# Groups of the master expression that are not terminals. Lark's terminal names
# are upper case, so lower case names cannot clash with them.
OPERATOR = "operator"  # any operator: its terminal is `operators[text]`
BAD = "bad_character"  # a character that no terminal matches
END = "end_of_text"  # nothing but skipped text (or nothing) left


class JacLexer(Lexer):
    """`master` matches what is skipped (comments, white space) and then one
    terminal, named by `lastgroup`: a patterned terminal, `OPERATOR`, `BAD` or
    `END`. A keyword matches as NAME (its terminal is `keywords[text]`); the
    terminal's own text is group `lastindex`.

    Every position matches (`BAD` takes any one character), so `finditer`
    never skips text, and the text ends with one `END` match.
    """

    def __init__(self, lexer_conf) -> None:
        terminals = {t.name: t for t in lexer_conf.terminals}
        self.keywords: dict[str, str] = {}
        operators: list[tuple[str, str]] = []
        name = re.compile(terminals["NAME"].pattern.to_regexp())
        for terminal in lexer_conf.terminals:
            if terminal.pattern.type != "str":
                continue
            text = terminal.pattern.value
            if name.fullmatch(text):
                self.keywords[text] = terminal.name
            else:
                operators.append((text, terminal.name))
        self.operators = dict(operators)

        def pattern(name: str) -> str:
            return _without_captures(terminals[name].pattern.to_regexp())

        # Possessive: skipped text, once matched, is never given back, as in a lexer
        # that tries the skipped terminals first. It saves a match per run of it.
        skipped = "(?:" + "|".join(pattern(t) for t in _SKIPPED) + ")*+"
        groups = [f"(?P<{t}>{pattern(t)})" for t in _PATTERNED]
        # Longest operators first, so that `**=` wins over `**` and `*`.
        by_length = sorted(self.operators, key=len, reverse=True)
        groups.append(f"(?P<{OPERATOR}>" + "|".join(re.escape(op) for op in by_length) + ")")
        groups += [f"(?P<{BAD}>(?s:.))", rf"(?P<{END}>\Z)"]
        self.master = re.compile(skipped + "(?:" + "|".join(groups) + ")")
        if self.master.groups != len(groups):  # `lastindex` must be the terminal's group
            raise ValueError("jacc.lexer: a terminal's pattern has a named group")

    def lex(self, data: str | LexerState, parser_state=None) -> Iterator[Token]:
        # Lark hands a custom lexer the text itself (or, in other versions, its state).
        return self.tokens(data if isinstance(data, str) else data.text.text)

    def tokens(self, text: str) -> Iterator[Token]:
        match = self.master.match
        keywords = self.keywords
        operators = self.operators
        position, line, line_start = 0, 1, 0
        while True:
            found = match(text, position)
            kind = found.lastgroup
            start, position = found.span(found.lastindex)
            skipped_lines = text.count("\n", found.start(), start)
            if skipped_lines:
                line += skipped_lines
                line_start = text.rindex("\n", found.start(), start) + 1
            if kind == END:
                return
            if kind == BAD:
                raise UnexpectedCharacters(text, start, line, start - line_start + 1)
            value = found.group(found.lastindex)
            if kind == "NAME":
                kind = keywords.get(value, "NAME")
            elif kind == OPERATOR:
                kind = operators[value]
            column = start - line_start + 1
            newlines = value.count("\n")
            if newlines:
                end_line = line + newlines
                line_start = start + value.rindex("\n") + 1
                end_column = position - line_start + 1
            else:
                end_line, end_column = line, column + len(value)
            yield Token(kind, value, start, line, column, end_line, end_column, position)
            line = end_line


def _without_captures(pattern: str) -> str:
    """`pattern` with each capturing `(...)` made `(?:...)`: the regex engine
    saves and restores every capture while it backtracks, about a tenth of the
    master expression's time, and nothing reads these."""
    out, index, class_start = [], 0, None
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if class_start is not None:
            # A `]` first in a class (`[]...]`, `[^]...]`) is a member, not the end.
            first = class_start + (2 if pattern.startswith("[^", class_start) else 1)
            if char == "]" and index != first:
                class_start = None
        elif char == "[":
            class_start = index
        elif char == "(" and not pattern.startswith("(?", index):
            char = "(?:"
        out.append(char)
        index += 1
    return "".join(out)
