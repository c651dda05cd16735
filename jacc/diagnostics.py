"""Diagnostics in rustc's shape, the table of their codes, and the two error families.

    error[E0101]: WebSocket walker `Chat` must be declared `async walker`
      --> app.jac:3:1
       |
     3 | walker : pub Chat {
       | ^^^^^^
       = help: write `async walker : pub Chat`

`JacError` is the user's family (their program is wrong: exit 1); anything else
escaping the compiler is ours (an internal compiler error: exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from .source import Source, Span

# Stable codes: never renumber, only add. docs/diagnostics.md mirrors this table.
CODES: dict[str, str] = {
    "E0001": "syntax error",
    "E0002": "invalid string literal",
    "E0003": "invalid Python construct",
    "E0004": "code nested too deeply",
    "E0005": "expression without `;`",
    "E0101": "WebSocket walker is not `async`",
    "E0102": "`broadcast=True` without `protocol=APIProtocol.WEBSOCKET`",
    "E0103": "unknown `@restspec` argument",
    "E0104": "unknown protocol",
    "E0105": "unknown HTTP method",
    "E0106": "`broadcast` or `stream` is not a boolean literal",
    "E0107": "`@restspec` on something that is not a walker or a module-level function",
    "E0108": "`APIProtocol.WEBHOOK` is not served by jacc",
    "E0109": "bad `@restspec` value",
    "E0110": "`@restspec` value jacc cannot read",
    "E0111": "a stream without `protocol=APIProtocol.WEBSOCKET`",
    "E0112": "`broadcast=True` on a stream",
    "E0201": "duplicate top-level name",
    "E0202": "duplicate field or member",
    "E0203": "`has` without a type",
    "E0204": "duplicate parameter",
    "E0205": "reserved name",
    "E0206": "parameter of a served function without a type",
    "E0207": "`*args` or `**kwargs` in a served function",
    "E0301": "`await` outside an async ability or function",
    "E0401": "unknown field or method of `self`",
    "E0402": "undefined name",
    "E0403": "`self` outside a walker",
    "E0404": "name used before the declaration that shadows it",
    "E0501": "`report` outside a walker's ability or method",
    "E0502": "`disengage` outside a walker's ability or method",
    "E0503": "`break` or `continue` outside a loop",
    "E0504": "`return` outside a function or ability",
    "E0505": "invalid assignment target",
    "E0506": "`yield` outside a function",
    "E0507": "`yield` in a walker's ability",
    "E0901": "Jac construct not supported by jacc",
    "E0902": "ability trigger not supported by jacc",
    "W0001": "legacy `` `root `` spelling",
    "W0002": "`global` or `nonlocal` statement",
    "W0003": "misplaced docstring",
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    help: str | None = None

    @property
    def severity(self) -> str:
        return "warning" if self.code.startswith("W") else "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple:
        return (self.span.line, self.span.column, self.code, self.message)

    def render(self, source: Source) -> str:
        span = self.span
        line_text = source.line(span.line)
        gutter = " " * (len(str(span.line)) + 1)  # ` 3 | ` and `  --> `, as in docs/diagnostics.md
        last = span.end_column if span.end_line == span.line else max(len(line_text), span.column)
        caret = " " * (span.column - 1) + "^" * max(1, last - span.column + 1)
        lines = [
            f"{self.severity}[{self.code}]: {self.message}",
            f"{gutter}--> {source.name}:{span.line}:{span.column}",
            f"{gutter} |",
            f" {span.line} | {line_text}".rstrip(),
            f"{gutter} | {caret}",
        ]
        if self.help:
            lines.append(f"{gutter} = help: {self.help}")
        return "\n".join(lines)

    def as_json(self) -> dict:
        """The diagnostic as `/__jacc/status` shows it (docs/protocol.md#dev-mode)."""
        span = self.span
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "line": span.line,
            "column": span.column,
            "end_line": span.end_line,
            "end_column": span.end_column,
            "help": self.help,
        }


def sort_diagnostics(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    unique = {(d.code, d.message, d.span): d for d in diagnostics}
    return sorted(unique.values(), key=Diagnostic.sort_key)


class JacError(Exception):
    """The user's program is wrong. Carries every diagnostic of the run, sorted."""

    def __init__(self, source: Source, diagnostics: list[Diagnostic]) -> None:
        self.source = source
        self.diagnostics = sort_diagnostics(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else None
        super().__init__(f"{source.name}: {first.message}" if first else source.name)

    def render(self) -> str:
        rendered = [d.render(self.source) for d in self.diagnostics]
        errors = sum(d.is_error for d in self.diagnostics)
        rendered.append(f"error: could not compile `{self.source.name}` "
                        f"({errors} error{'s' if errors != 1 else ''})")
        return "\n\n".join(rendered)


class InputError(JacError):
    """The input could not be read at all (a missing file, bad UTF-8)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.source = Source("", "")
        self.diagnostics = []
        self.message = message

    def render(self) -> str:
        return f"error: {self.message}"
