"""Number and string literals → nodes.

Jac's literal syntax is Python's. An f-string is split into its text and its
`{expression}` parts here, and each expression is parsed as Jac by the function
the parser hands in. A literal Python would refuse never raises: it becomes a
`BadString` node, which the checker reports (E0002).
"""

from __future__ import annotations

import ast
import warnings
from typing import Any, Callable

from lark import Token

from . import nodes as n
from .source import Span

ParseExpr = Callable[[str], Any]  # the text of one `{expression}` → its node


class FStringError(Exception):
    """A malformed f-string; the message is the diagnostic's."""


def number(token: Token) -> n.Constant | n.BadString:
    span = Span.of_token(token)
    try:
        return n.Constant(span, literal(str(token)))
    except (SyntaxError, ValueError):
        return n.BadString(span, f"invalid number literal `{token}`")


def string(token: Token, parse_expr: ParseExpr) -> n.Constant | n.FString | n.BadString:
    span = Span.of_token(token)
    text = str(token)
    prefix = text[: len(text) - len(text.lstrip("rRbBuUfF"))]
    try:
        if "f" in prefix.lower():
            return _FString(token, prefix, parse_expr).node()
        return n.Constant(span, literal(text))
    except (SyntaxError, ValueError) as error:
        return n.BadString(span, _string_error(error))
    except FStringError as error:
        return n.BadString(span, str(error))


def concatenate(span: Span, items: list) -> n.Constant | n.FString | n.BadString:
    """Adjacent literals, `"a" f"{b}"`, as one node."""
    if any(isinstance(i, n.BadString) for i in items):
        return next(i for i in items if isinstance(i, n.BadString))
    if all(isinstance(i, n.Constant) for i in items):
        values = [i.value for i in items]
        if len({type(v) for v in values}) > 1:
            return n.BadString(span, "cannot mix bytes and nonbytes literals")
        return n.Constant(span, values[0][:0].join(values))
    if any(isinstance(i, n.Constant) and isinstance(i.value, bytes) for i in items):
        return n.BadString(span, "cannot mix bytes and nonbytes literals")
    parts: list = []
    for item in items:
        parts.extend(item.parts if isinstance(item, n.FString) else (item.value,))
    return n.FString(span, tuple(_merge_text(parts)))


def literal(text: str) -> Any:
    """The value of a literal; raises SyntaxError or ValueError as Python would."""
    if text.isdigit() and text.isascii() and (text[0] != "0" or text == "0"):
        return int(text)  # the common cases, without a trip through compile()
    if text[0] in "\"'" and "\\" not in text and text[1:2] != text[0]:
        return text[1:-1]
    # An invalid escape is only a warning in Python: the literal keeps it as written.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.literal_eval(text)


def _string_error(error: Exception) -> str:
    message = getattr(error, "msg", None) or str(error)
    if message.startswith("(unicode error)"):
        # "(unicode error) 'unicodeescape' codec can't decode bytes in position 0-2: truncated
        # \xXX escape": only the reason means anything to the user.
        return "invalid escape sequence: " + message.rsplit(": ", 1)[-1]
    return message.split(" (", 1)[0]


def _merge_text(parts: list) -> list:
    merged: list = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    return merged


# ---------------------------------------------------------------- f-strings


class _FString:
    """One f-string token, split into text and `FormattedValue` parts."""

    def __init__(self, token: Token, prefix: str, parse_expr: ParseExpr) -> None:
        self.token = token
        self.text = str(token)
        quote = self.text[len(prefix):len(prefix) + 3]
        self.quote = quote if quote in ('"""', "'''") else quote[0]
        self.body_start = len(prefix) + len(self.quote)
        self.text_prefix = "r" if "r" in prefix.lower() else ""
        self.parse_expr = parse_expr

    def node(self) -> n.FString:
        body = self.text[self.body_start: len(self.text) - len(self.quote)]
        return n.FString(Span.of_token(self.token), tuple(_merge_text(self.parts(body, 0))))

    def parts(self, body: str, offset: int, depth: int = 0) -> list:
        """The parts of `body`, which starts `offset` characters into the f-string's body
        (a format spec is split the same way as the whole, one level deeper)."""
        parts: list = []
        chunk = ""
        i = 0
        while i < len(body):
            char = body[i]
            if char == "\\" and not self.text_prefix:
                escape = _escape_length(body, i)  # `\N{BULLET}` is one character, no field
                chunk += body[i: i + escape]
                i += escape
            elif char in "{}" and body[i + 1: i + 2] == char:
                chunk += char
                i += 2
            elif char == "}":
                raise FStringError("f-string: single '}' is not allowed")
            elif char != "{":
                chunk += char
                i += 1
            elif depth >= _MAX_FIELD_DEPTH:
                # Python 3.11's limit, which the `.py` of `jacc build` must keep to.
                raise FStringError("f-string: expressions nested too deeply")
            else:
                parts.append(self.literal(chunk))
                chunk = ""
                field, i = self.field(body, i + 1, offset, depth)
                parts.extend(field)
        parts.append(self.literal(chunk))
        return parts

    def field(self, body: str, start: int, offset: int, depth: int) -> tuple[list, int]:
        """The parts of the replacement field that starts at `body[start]`, and the
        index just after its `}`."""
        end, conversion_at, spec_at = _field_end(body, start)
        expr_text = body[start: next(i for i in (conversion_at, spec_at, end) if i is not None)]
        parts: list = []
        if _shows_itself(expr_text):  # `{x=}` and `{x = }` show their own text, then the value
            parts.append(expr_text)
            expr_text = expr_text.rstrip()[:-1]
        if not expr_text.strip():
            raise FStringError("f-string: empty expression not allowed")
        line, column = self.position(offset + start)
        # Padded so that the expression's nodes carry their place in the file.
        expr = self.parse_expr("\n" * (line - 1) + " " * (column - 1) + expr_text)
        conversion = _conversion(body, conversion_at, spec_at, end)
        spec = None
        if spec_at is not None:
            spec_parts = self.parts(body[spec_at + 1: end], offset + spec_at + 1, depth + 1)
            spec = n.FString(expr.span, tuple(_merge_text(spec_parts)))
        if parts and conversion is None and spec is None:
            conversion = "r"  # Python's default for `{x=}`
        parts.append(n.FormattedValue(expr.span, expr, conversion, spec))
        return parts, end + 1

    def literal(self, chunk: str) -> str:
        if not chunk:
            return ""
        # A backslash just before a field, `f"\\{x}"`, escapes nothing: it stays, as in
        # Python; written last in a literal it would escape the closing quote instead.
        lone = (len(chunk) - len(chunk.rstrip("\\"))) % 2
        try:
            text = literal(self.text_prefix + self.quote + chunk[:len(chunk) - lone] + self.quote)
        except (SyntaxError, ValueError) as error:
            raise FStringError(_string_error(error)) from None
        return text + "\\" * lone

    def position(self, offset: int) -> tuple[int, int]:
        """Line and column of the character `offset` characters into the body."""
        before = self.text[: self.body_start + offset]
        line = self.token.line + before.count("\n")
        if "\n" in before:
            return line, len(before) - before.rfind("\n")
        return line, self.token.column + len(before)


# A replacement field may hold one more in its format spec, `f"{x:{width}}"`, no deeper.
_MAX_FIELD_DEPTH = 2


def _escape_length(body: str, start: int) -> int:
    """How many characters the escape at `body[start]` (a backslash) takes: all of a
    named one, `\\N{BULLET}`; two for `\\\\`; else the backslash alone, since what follows
    it (a `{` included) is read as usual."""
    if body.startswith("N{", start + 1):
        close = body.find("}", start + 3)
        return close - start + 1 if close != -1 else 1
    return 2 if body[start + 1: start + 2] == "\\" else 1


def _shows_itself(expr_text: str) -> bool:
    stripped = expr_text.rstrip()
    return stripped.endswith("=") and not stripped.endswith(("==", "!=", "<=", ">="))


def _conversion(body: str, conversion_at: int | None, spec_at: int | None,
                end: int) -> str | None:
    if conversion_at is None:
        return None
    conversion = body[conversion_at + 1: spec_at if spec_at is not None else end]
    if conversion not in ("r", "s", "a"):
        raise FStringError("f-string: invalid conversion character: expected 's', 'r', or 'a'")
    return conversion


def _field_end(body: str, start: int) -> tuple[int, int | None, int | None]:
    """Index of the `}` closing a replacement field, and of its `!` and `:` if any."""
    depth = 0
    quote = None
    conversion_at = spec_at = None
    i = start
    while i < len(body):
        char = body[i]
        if quote:
            if char == "\\":
                i += 1
            elif body.startswith(quote, i):
                i += len(quote) - 1
                quote = None
        elif char in "'\"" and spec_at is None:
            quote = body[i: i + 3] if body[i: i + 3] in ('"""', "'''") else char
            i += len(quote) - 1
        elif char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        elif depth == 0 and char == "}":
            return i, conversion_at, spec_at
        elif depth == 0 and spec_at is None:
            if char == "!" and body[i + 1: i + 2] != "=" and conversion_at is None:
                conversion_at = i
            elif char == ":":
                spec_at = i
        i += 1
    raise FStringError("f-string: expecting '}'")
