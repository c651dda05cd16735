"""Source text and spans: where a diagnostic points and what line it shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Span(NamedTuple):
    """1-based line and column of the first and of the last character (end included).

    A named tuple rather than a frozen dataclass: every token and node has one, and a
    tuple is made, compared and hashed in C, four times faster to make (that was a
    fifth of the time lowering took); immutable, ordered and printed all the same.
    """

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def of_token(cls, token) -> Span:
        # Lark's end_column points one past the token; ours is the last character. The
        # floor at `column` (for an empty token) only makes sense on the token's first line.
        line, column, end_line = token.line, token.column, token.end_line
        end_column = token.end_column - 1
        if end_line == line and end_column < column:
            end_column = column
        # As `cls(...)` makes it, without the call of the named tuple's `__new__`.
        return _new_tuple(cls, (line, column, end_line, end_column if end_column > 1 else 1))

    def to(self, other: Span) -> Span:
        """The span from the start of self to the end of other."""
        return _new_tuple(Span, (self.line, self.column, other.end_line, other.end_column))


_new_tuple = tuple.__new__


@dataclass(frozen=True)
class Source:
    """A `.jac` file's name and text, with line lookup for diagnostics."""

    name: str
    text: str

    def line(self, number: int) -> str:
        # Lark counts lines by "\n" alone; str.splitlines() also breaks at \f, \x1c, \u2028...
        lines = self.text.split("\n")
        return lines[number - 1].removesuffix("\r") if 0 < number <= len(lines) else ""
