"""The position check shared by the tests of generated code.

Codegen places every Python node it makes at its Jac node's span, and nothing
mends a missing or invalid position afterwards: these tests are what catch one.
"""

from __future__ import annotations

import ast

_FIELDS = ("lineno", "col_offset", "end_lineno", "end_col_offset")


def misplaced(tree: ast.AST, text: str) -> list[str]:
    """Every node of `tree` whose position is missing, invalid, or outside `text`."""
    last_line = text.count("\n") + 1
    problems = []
    for node in ast.walk(tree):
        if "lineno" not in node._attributes:
            continue  # operators, contexts, `arguments`, `comprehension`: no position
        position = tuple(getattr(node, name, None) for name in _FIELDS)
        if None in position or not _valid(*position, last_line):
            problems.append(f"{position} {ast.dump(node)[:200]}")
    return problems


def _valid(line: int, column: int, end_line: int, end_column: int, last_line: int) -> bool:
    return (1 <= line <= end_line <= last_line and column >= 0 and end_column >= 0
            and (line < end_line or column <= end_column))
