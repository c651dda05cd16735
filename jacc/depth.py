"""How deeply a program may nest, and room for the stages that recurse over it.

The parser and lower never recurse (Lark's LALR parser keeps its own stack; operator
chains are folded with an explicit one), so any input, however deep, becomes nodes.
The checker, codegen, `ast.unparse` and `compile()` do recurse, a few Python frames
per level of nesting; they run inside `deep_enough()`, which raises the recursion
limit to fit `MAX_DEPTH` levels, and the checker refuses anything deeper (E0004).

Measured on CPython 3.11 (docs/language.md, "Deep code"): compiling source text, it
takes about 2990 nested levels from the top of the stack (its compiler's limit is
three times the recursion limit of 1000, less three for each frame it is called
from); 20 nested loops and `try` blocks (CO_MAXBLOCKS), whatever the input; and,
for text only, 200 nested brackets and 99 levels of indentation.
"""

from __future__ import annotations

import ast
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from .diagnostics import Diagnostic
from .source import Span

# jacc stops a little short of CPython's 2990, so that a built module still imports
# when the import starts some 30 frames deep.
MAX_DEPTH = 2900
MAX_BLOCKS = 20  # CPython's CO_MAXBLOCKS: nested loops, `try` and `with` in one function
MAX_BRACKETS = 200  # CPython's tokenizer: nested (, [ and { in source text
MAX_INDENT = 99  # CPython's tokenizer: levels of indentation in source text

# Frames per level of nesting, at most, over the recursive stages, with room for the
# caller's own stack. Measured: `if` blocks nested 2895 deep take 20 350 frames (seven
# a level, in codegen: statement, prelude, rule, body, statements...), `elif` chains
# six, calls and lambdas three, operator chains two.
_RECURSION_LIMIT = 8 * MAX_DEPTH + 2000

_lock = threading.Lock()
_users = 0
_restore = 0


@contextmanager
def deep_enough() -> Iterator[None]:
    """Run with a recursion limit that fits `MAX_DEPTH` levels of nesting.

    The limit is the interpreter's, shared by every thread: it is raised when the
    first user enters and put back when the last one leaves. Python 3.11 keeps Python
    frames off the C stack, so the higher limit costs memory only where used.
    """
    global _users, _restore
    with _lock:
        if _users == 0:
            _restore = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_restore, _RECURSION_LIMIT))
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                sys.setrecursionlimit(_restore)


def too_deep(span: Span, message: str, help: str) -> Diagnostic:
    point = Span(span.line, span.column, span.line, span.column)
    return Diagnostic("E0004", message, point, help=help)


def deepest(tree: ast.AST, counts: type | tuple[type, ...] = ast.AST) -> ast.AST:
    """The located node of `tree` under the most nodes of the kinds `counts` (all
    nodes by default): where to point when a compiler gave up on the nesting.
    Iterative, since it runs when recursion has already run out."""
    best, best_level = tree, -1
    pending: list[tuple[ast.AST, int]] = [(tree, 0)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, counts):
            level += 1
        if level > best_level and hasattr(node, "lineno"):
            best, best_level = node, level
        pending.extend((child, level) for child in ast.iter_child_nodes(node))
    return best


def deepest_statement(tree: ast.Module) -> ast.AST:
    """The statement under the most levels of indentation (an `elif` adds none)."""
    best, best_level = tree, -1
    pending: list[tuple[ast.AST, int]] = [(statement, 0) for statement in tree.body]
    while pending:
        node, level = pending.pop()
        if level > best_level:
            best, best_level = node, level
        for name, value in ast.iter_fields(node):
            if not (isinstance(value, list) and value and isinstance(value[0], ast.AST)):
                continue
            # `elif` and `except` stand at their statement's own level.
            same = name == "handlers" or name == "orelse" and len(value) == 1 \
                and isinstance(node, ast.If) and isinstance(value[0], ast.If)
            for child in value:
                if isinstance(child, (ast.stmt, ast.excepthandler)):
                    pending.append((child, level if same else level + 1))
    return best


def span_of(node: ast.AST) -> Span:
    return Span(node.lineno, node.col_offset + 1, node.lineno, node.col_offset + 1)
