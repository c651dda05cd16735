"""Source text and spans: where a diagnostic points and what line it shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """1-based line and column of the first and of the last character (end included)."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def of_token(cls, token) -> Span:
        # Lark's end_column points one past the token; ours is the last character. The
        # floor at `column` (for an empty token) only makes sense on the token's first line.
        end_column = token.end_column - 1
        if token.end_line == token.line:
            end_column = max(end_column, token.column)
        return cls(token.line, token.column, token.end_line, max(end_column, 1))

    def to(self, other: Span) -> Span:
        """The span from the start of self to the end of other."""
        return Span(self.line, self.column, other.end_line, other.end_column)



@dataclass(frozen=True)
class Source:
    """A `.jac` file's name and text, with line lookup for diagnostics."""

    name: str
    text: str

    def line(self, number: int) -> str:
        # Lark counts lines by "\n" alone; str.splitlines() also breaks at \f, \x1c, \u2028...
        lines = self.text.split("\n")
        return lines[number - 1].removesuffix("\r") if 0 < number <= len(lines) else ""
