"""The node classes (`jacc.nodes`) against the stages that read them.

Every kind of statement and expression has its codegen method and is known to the
checker, and every field that holds statements reaches the built module's line
table. A node one stage forgot fails here, not silently in a user's program.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from jacc import nodes as n
from jacc.checker import VISITORS, ModuleChecker, _Scope
from jacc.codegen import CodeGen, module_source
from jacc.compiler import compile_source
from jacc.diagnostics import JacError
from jacc.parser import parse_module
from jacc.source import Source, Span

ROOT = Path(__file__).parent.parent
FORMS = ROOT / "tests" / "cases" / "forms.jac"
PROGRAMS = sorted([*ROOT.glob("samples/*.jac"), *ROOT.glob("tests/cases/*.jac")])

NODE_CLASSES = [c for c in vars(n).values()
                if isinstance(c, type) and issubclass(c, n.Node) and c is not n.Node]
STATEMENTS = typing.get_args(n.Stmt)
EXPRESSIONS = typing.get_args(n.Expr)
ELEMENTS = typing.get_args(n.Element)
SPAN = Span(2, 1, 2, 1)


def _names(classes) -> list[str]:
    return [c.__name__ for c in classes]


def _walk(node: n.Node):
    """Every node below `node`, itself included. Not recursive: the cases include code
    nested as deeply as the compiler takes (e0004_*)."""
    pending = [node]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(reversed(list(n.children(node))))


def _statement_fields() -> list[tuple[type, str]]:
    """Each (node class, field) that holds statements, read off the type hints."""
    found = []
    for cls in NODE_CLASSES:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            args = typing.get_args(hint)
            if typing.get_origin(hint) is tuple and args and args[0] in (n.Stmt, n.ExceptHandler):
                found.append((cls, field.name))
    return found


def _forms() -> n.Module:
    return parse_module(Source("forms.jac", FORMS.read_text(encoding="utf-8")))


# Every field that holds statements, filled (forms.jac has no loop or `try` with `else`).
BLOCKS = '''
def f(n: int) -> int {
    for i in range(n) {
        if i > 5 { break; } elif i { continue; } else { n += 1; }
    } else {
        n -= 1;
    }
    while n > 10 {
        n -= 1;
    } else {
        n += 0;
    }
    try {
        n = n // 1;
    } except ZeroDivisionError as error {
        raise;
    } else {
        n += 1;
    } finally {
        n += 0;
    }
    return n;
}

walker : pub W {
    can go with entry {
        report f(3);
        report (lambda (n: int) { n += 1; return n; })(1);
    }
}
'''


# ---------------------------------------------------------------- every stage knows every node


@pytest.mark.parametrize("cls", STATEMENTS, ids=_names(STATEMENTS))
def test_every_statement_has_its_codegen_method_and_checker_visit(cls: type) -> None:
    assert callable(getattr(CodeGen, "stmt_" + cls.__name__, None))
    assert callable(VISITORS.get(cls))


@pytest.mark.parametrize("cls", EXPRESSIONS, ids=_names(EXPRESSIONS))
def test_every_expression_has_its_codegen_method_and_checker_visit(cls: type) -> None:
    assert callable(getattr(CodeGen, "expr_" + cls.__name__, None))
    assert callable(VISITORS.get(cls))


@pytest.mark.parametrize("cls", ELEMENTS, ids=_names(ELEMENTS))
def test_every_module_element_has_its_codegen_method(cls: type) -> None:
    assert callable(getattr(CodeGen, "element_" + cls.__name__, None))


def test_node_classes_are_derived_and_the_unions_are_made_of_them() -> None:
    assert set(n.NODE_CLASSES) == set(NODE_CLASSES) == set(VISITORS)
    for union in (STATEMENTS, EXPRESSIONS, ELEMENTS, typing.get_args(n.Member)):
        assert union and set(union) <= set(NODE_CLASSES)


@pytest.mark.parametrize("visitor", [ModuleChecker, CodeGen], ids=lambda v: v.__name__)
def test_every_rule_names_a_node_class(visitor: type) -> None:
    # A method for a class that was renamed or removed would never run.
    prefixes = ("visit_", "stmt_", "expr_", "element_")
    rules = {name.split("_", 1)[1] for name in vars(visitor) if name.startswith(prefixes)}
    assert rules and rules <= set(_names(NODE_CLASSES))


def test_the_checker_keeps_rules_only_where_it_has_them() -> None:
    # The rest is the generic traversal, as in `ast.NodeVisitor`.
    generic = {cls for cls, visit in VISITORS.items() if visit is ModuleChecker.generic_visit}
    assert {n.BinOp, n.If, n.Try, n.Subscript, n.Slice, n.FString} <= generic
    assert {n.Name, n.Call, n.Report, n.Comprehension} & generic == set()


# A node class outside `jacc.nodes`, as a stage that forgot to declare one would make.
@dataclasses.dataclass(frozen=True, slots=True)
class Stranger(n.Node):
    value: n.Expr


def _checker() -> tuple[ModuleChecker, object]:
    module = parse_module(Source("app.jac", "\nwalker W {}\n"))
    checker = ModuleChecker(module)
    checker.run()
    return checker, _Scope(checker.known_globals())


def test_the_checker_refuses_a_node_it_does_not_know() -> None:
    checker, scope = _checker()
    with pytest.raises(TypeError, match="Stranger is not a node of jacc.nodes"):
        checker.visit(Stranger(SPAN, n.Constant(SPAN, 1)), scope)
    # Inside a node with no rule of its own too: the generic traversal does not skip it.
    with pytest.raises(TypeError, match="Stranger is not a node of jacc.nodes"):
        checker.visit(n.ExprStmt(SPAN, Stranger(SPAN, n.Constant(SPAN, 1))), scope)


@pytest.mark.parametrize("stray", [object(), [n.Constant(SPAN, 1)], {"a": 1}],
                         ids=["object", "list", "dict"])
def test_the_generic_traversal_refuses_what_is_not_a_node(stray: object) -> None:
    # Such as a half-built part of the lowering, left where a node belongs.
    checker, scope = _checker()
    with pytest.raises(TypeError, match="BinOp.right holds a"):
        checker.visit(n.BinOp(SPAN, n.Constant(SPAN, 1), "+", stray), scope)


def test_codegen_refuses_a_node_it_does_not_know() -> None:
    codegen = CodeGen(parse_module(Source("app.jac", "\nwalker W {}\n")))
    with pytest.raises(TypeError, match="codegen: no rule for Stranger"):
        codegen.expr(Stranger(SPAN, n.Constant(SPAN, 1)))
    with pytest.raises(TypeError, match="codegen: no rule for Stranger"):
        codegen.statement(Stranger(SPAN, n.Constant(SPAN, 1)))


# ---------------------------------------------------------------- statements are never lost


def test_the_fields_that_hold_statements_are_found() -> None:
    # If this list shrinks, the hints changed shape and the tests below prove less.
    fields = {(cls.__name__, name) for cls, name in _statement_fields()}
    assert {("Try", "handlers"), ("Try", "finalbody"), ("Ability", "body"),
            ("Function", "body"), ("ExceptHandler", "body"), ("If", "orelse")} <= fields


def test_blocks_fills_every_field_that_holds_statements() -> None:
    filled = {(type(node), field.name) for node in _walk(parse_module(Source("b", BLOCKS)))
              for field in dataclasses.fields(node) if getattr(node, field.name)}
    assert set(_statement_fields()) - filled == set()


@pytest.mark.parametrize("program", ["blocks", "forms"])
def test_the_line_table_maps_every_statement_of_a_built_module(program: str) -> None:
    source = BLOCKS if program == "blocks" else FORMS.read_text(encoding="utf-8")
    tree = compile_source(source).tree
    text = module_source(tree, "app.jac")
    built = ast.parse(text)
    table = next(ast.literal_eval(s.value) for s in built.body if isinstance(s, ast.Assign)
                 and s.targets[0].id == "__jacc_lines__")
    built.body = [s for s in built.body if not (
        isinstance(s, ast.Assign) and s.targets[0].id.startswith("__jacc_"))]

    def statements(module: ast.Module) -> list[ast.AST]:
        # Breadth first: the order depends on the statements' nesting only.
        return [s for s in ast.walk(module) if isinstance(s, (ast.stmt, ast.excepthandler))]

    originals, copies = statements(tree), statements(built)
    assert len(originals) == len(copies) == len(table) > 15
    for original, copy in zip(originals, copies):
        assert type(original) is type(copy)
        assert table[copy.lineno] == original.lineno, ast.dump(copy)[:100]


# ---------------------------------------------------------------- spans


def _parsed(path: Path) -> n.Module | None:
    try:
        return parse_module(Source(path.name, path.read_text(encoding="utf-8")))
    except JacError:
        return None


@pytest.mark.parametrize("path", [p for p in PROGRAMS if _parsed(p)], ids=lambda p: p.name)
def test_every_node_has_a_span_inside_its_file(path: Path) -> None:
    module = _parsed(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    for node in _walk(module):
        span = node.span
        assert 1 <= span.line <= span.end_line <= len(lines), node
        assert 1 <= span.column and 1 <= span.end_column, node
        assert (span.line, span.column) <= (span.end_line, span.end_column), node
