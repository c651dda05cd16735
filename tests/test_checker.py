"""Diagnostics (docs/diagnostics.md): golden `.err` files, one bad program per code, and the
rules every diagnostic follows.

Each `cases/NAME.jac` is compiled with the name `cases/NAME.jac`. A program that
fails must match `NAME.err` (the output of `JacError.render()`); a program that
compiles with warnings must match `NAME.err` too (the warnings, rendered). Run
with `JACC_UPDATE_GOLDEN=1` to rewrite the goldens, then read the diff.
Cases named after a code (`e0101_*.jac`) produce that code and no other.
"""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest

import jacc_runtime
from jacc.compiler import Compiled, compile_source
from jacc.diagnostics import CODES, Diagnostic, JacError
from jacc.source import Source, Span

CASES = Path(__file__).parent / "cases"
UPDATE = os.environ.get("JACC_UPDATE_GOLDEN") == "1"
ALL_CASES = sorted(p.stem for p in CASES.glob("*.jac"))
CODE_CASE = re.compile(r"^([ew]\d{4})_")


def _compile(name: str):
    text = (CASES / f"{name}.jac").read_text(encoding="utf-8")
    return compile_source(text, name=f"cases/{name}.jac")


def _rendered(name: str) -> tuple[str, list[Diagnostic], bool]:
    """The golden text of a case, its diagnostics, and whether it failed."""
    try:
        compiled = _compile(name)
    except JacError as error:
        return error.render() + "\n", error.diagnostics, True
    warnings = compiled.warnings
    text = "\n\n".join(w.render(compiled.source) for w in warnings)
    return (text + "\n" if text else ""), warnings, False


def _check_golden(path: Path, actual: str) -> None:
    if UPDATE:
        if actual:
            path.write_text(actual, encoding="utf-8")
        elif path.exists():
            path.unlink()
        return
    if not actual:
        assert not path.exists(), f"{path.name}: the program has no diagnostics"
        return
    assert path.exists(), f"{path.name} is missing: run with JACC_UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8")


def _diagnostics(text: str, name: str = "app.jac") -> list[Diagnostic]:
    with pytest.raises(JacError) as info:
        compile_source(text, name=name)
    return info.value.diagnostics


def _accepted(text: str) -> Compiled:
    """A program the checker must accept without a word: no error, no warning."""
    compiled = compile_source(text)
    assert compiled.warnings == [], [w.render(compiled.source) for w in compiled.warnings]
    return compiled


def _walker(text: str, name: str = "W", **modules: types.ModuleType) -> type:
    """The walker class an accepted program defines; `modules` stand in for its imports."""
    namespace: dict = {"__name__": "accepted"}
    with pytest.MonkeyPatch.context() as patch:
        for module_name, module in modules.items():
            patch.setitem(sys.modules, module_name, module)
        exec(_accepted(text).code, namespace)
    return namespace[name]


# ---------------------------------------------------------------- goldens


@pytest.mark.parametrize("name", ALL_CASES)
def test_diagnostics_match_the_golden_file(name: str) -> None:
    text, _, failed = _rendered(name)
    if failed:
        assert not (CASES / f"{name}.py").exists(), "a program that fails has no build golden"
    _check_golden(CASES / f"{name}.err", text)


@pytest.mark.parametrize("name", [n for n in ALL_CASES if CODE_CASE.match(n)])
def test_a_case_named_after_a_code_produces_that_code_only(name: str) -> None:
    code = CODE_CASE.match(name).group(1).upper()
    _, diagnostics, failed = _rendered(name)
    assert diagnostics, "the case must produce a diagnostic"
    assert {d.code for d in diagnostics} == {code}
    assert failed == code.startswith("E")


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_has_a_golden_case(code: str) -> None:
    cases = [n for n in ALL_CASES if n.startswith(code.lower() + "_")]
    assert cases, f"no tests/cases/{code.lower()}_*.jac"
    for name in cases:
        golden = (CASES / f"{name}.err").read_text(encoding="utf-8")
        assert f"[{code}]: " in golden


@pytest.mark.parametrize("name", ALL_CASES)
def test_cases_start_with_a_blank_line(name: str) -> None:
    # So that a diagnostic stuck at line 1 can never pass by accident.
    assert (CASES / f"{name}.jac").read_text(encoding="utf-8").startswith("\n")


def test_codes_table_is_mirrored_in_the_docs() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([EW]\d{4})` \| ([^|]+?) \|", docs, re.M))
    assert rows == CODES


# ---------------------------------------------------------------- the shape of a diagnostic


def test_render_has_the_shape_of_the_spec_example() -> None:
    text = "\n@restspec(protocol=APIProtocol.WEBSOCKET)\nwalker : pub Chat {\n}\n"
    source = Source("app.jac", text)
    [diagnostic] = _diagnostics(source.text)
    assert diagnostic.render(source) == (
        "error[E0101]: WebSocket walker `Chat` must be declared `async walker`\n"
        "  --> app.jac:3:1\n"
        "   |\n"
        " 3 | walker : pub Chat {\n"
        "   | ^^^^^^\n"
        "   = help: write `async walker : pub Chat`"
    )


def test_render_counts_errors_and_not_warnings() -> None:
    text = "\nwalker W {\n    can a with `root entry { x = y; }\n}\n"
    with pytest.raises(JacError) as info:
        compile_source(text)
    assert [d.code for d in info.value.diagnostics] == ["W0001", "E0402"]
    assert info.value.render().endswith("error: could not compile `app.jac` (1 error)")


def test_a_wide_line_number_widens_the_gutter() -> None:
    text = "\n" * 11 + "def f() { return nothing; }\n"
    [diagnostic] = _diagnostics(text)
    assert diagnostic.render(Source("app.jac", text)).splitlines()[1:] == [
        "   --> app.jac:12:18",
        "    |",
        " 12 | def f() { return nothing; }",
        "    |                  ^^^^^^^",
    ]


def test_messages_are_lowercase_without_a_trailing_period() -> None:
    for name in ALL_CASES:
        _, diagnostics, _ = _rendered(name)
        for d in diagnostics:
            assert d.message.endswith("...") or not d.message.endswith("."), (name, d.message)
            first = d.message.lstrip("`")[0]
            assert not first.isupper() or d.message.startswith(("WebSocket", "`")), d.message


def test_spans_lie_inside_the_source() -> None:
    for name in ALL_CASES:
        text = (CASES / f"{name}.jac").read_text(encoding="utf-8")
        lines = text.splitlines()
        _, diagnostics, _ = _rendered(name)
        for d in diagnostics:
            span = d.span
            assert span.line > 1, (name, d)  # every case starts with a blank line
            assert (span.line, span.column) <= (span.end_line, span.end_column)
            if span.line <= len(lines):
                assert span.column <= len(lines[span.line - 1]) + 1, (name, d)


# ---------------------------------------------------------------- several errors in one run


def test_several_errors_are_all_reported_sorted_by_position() -> None:
    with pytest.raises(JacError) as info:
        _compile("several_errors")
    diagnostics = info.value.diagnostics
    codes = [d.code for d in diagnostics]
    assert len(set(codes)) >= 7, codes
    assert {"E0101", "E0106", "E0202", "E0203", "E0301", "E0401", "E0402", "E0403",
            "E0501"} <= set(codes)
    positions = [(d.span.line, d.span.column) for d in diagnostics]
    assert positions == sorted(positions)
    assert info.value.render().endswith(f"({len(diagnostics)} errors)")


def test_the_same_problem_is_reported_once() -> None:
    text = "\nwalker W {\n    can a with entry { report nope; }\n}\n"
    assert [d.code for d in _diagnostics(text)] == ["E0402"]


def test_every_unsupported_construct_in_a_file_is_reported() -> None:
    text = "\nnode A {}\n\nedge B {}\n\nwalker W {\n    can go with entry { visit [-->]; }\n}\n"
    diagnostics = _diagnostics(text)
    assert [(d.span.line, d.message) for d in diagnostics] == [
        (2, "`node` is not supported by jacc"),
        (4, "`edge` is not supported by jacc"),
        (7, "`visit` is not supported by jacc"),
        (7, "`-->` is not supported by jacc"),
    ]


# ---------------------------------------------------------------- unsupported Jac


UNSUPPORTED = [
    ("node", "node Room {\n    has name: str;\n}"),
    ("edge", "edge Door {}"),
    ("obj", "obj Point {\n    has x: int;\n}"),
    ("class", "class Point {}"),
    ("enum", "enum Color { RED, GREEN }"),
    ("impl", "impl Room.describe {\n    return 1;\n}"),
    ("visit", "walker W {\n    can go with entry {\n        visit self;\n    }\n}"),
    ("spawn", "walker W {\n    can go with entry {\n        x = W() spawn here;\n    }\n}"),
    ("++>", "walker W {\n    can go with entry {\n        a ++> b;\n    }\n}"),
    ("<++", "walker W {\n    can go with entry {\n        a <++ b;\n    }\n}"),
    ("<++>", "walker W {\n    can go with entry {\n        a <++> b;\n    }\n}"),
    ("-->", "walker W {\n    can go with entry {\n        x = [-->];\n    }\n}"),
    ("<--", "walker W {\n    can go with entry {\n        x = [<--];\n    }\n}"),
    ("<-->", "walker W {\n    can go with entry {\n        x = [<-->];\n    }\n}"),
    ("here", "walker W {\n    can go with entry {\n        report here;\n    }\n}"),
    ("visitor", "def f() {\n    return visitor;\n}"),
    ("ignore", "walker W {\n    can go with entry {\n        ignore [a];\n    }\n}"),
    ("pass", "def nothing() {\n    pass;\n}"),
]


@pytest.mark.parametrize(("construct", "snippet"), UNSUPPORTED, ids=[c for c, _ in UNSUPPORTED])
def test_unsupported_construct_is_named(construct: str, snippet: str) -> None:
    text = "\n" + snippet + "\n"
    with pytest.raises(JacError) as info:
        compile_source(text)
    diagnostics = info.value.diagnostics
    first = diagnostics[0]
    assert first.code == "E0901"
    assert first.message == f"`{construct}` is not supported by jacc"
    line = text.splitlines()[first.span.line - 1]
    assert line[first.span.column - 1: first.span.end_column] == construct
    assert first.span.line > 1
    assert "unexpected" not in info.value.render()


# ---------------------------------------------------------------- legacy spelling, keywords


def test_legacy_root_spelling_is_accepted_with_a_warning() -> None:
    compiled = _compile("w0001_legacy_root")
    [warning] = compiled.warnings
    assert warning.code == "W0001"
    assert warning.severity == "warning"
    assert warning.span == Span(5, 19, 5, 23)
    namespace: dict = {}
    exec(compiled.code, namespace)
    assert jacc_runtime.run(namespace["Echo"](message="hi")) == ["hi"]


def test_legacy_root_warning_does_not_hide_errors() -> None:
    text = "\nwalker W {\n    can a with `root exit { report self.nope; }\n}\n"
    assert [d.code for d in _diagnostics(text)] == ["W0001", "E0401"]


KEYWORDS_AS_NAMES = [
    ("walker", "glob walker = 1;"),
    ("report", "def f(report: int) -> int {\n    return report;\n}"),
    ("entry", "walker W {\n    has entry: str;\n}"),
    ("has", "def f() {\n    has = 1;\n}"),
    ("can", "def can() {}"),
    ("disengage", "def f() {\n    x = disengage;\n}"),
    ("static", "glob static = 1;"),
    ("glob", "def f(glob) {}"),
]


@pytest.mark.parametrize(("keyword", "snippet"), KEYWORDS_AS_NAMES,
                         ids=[k for k, _ in KEYWORDS_AS_NAMES])
def test_keyword_used_as_a_name(keyword: str, snippet: str) -> None:
    text = "\n" + snippet + "\n"
    [diagnostic] = _diagnostics(text)
    assert diagnostic.code == "E0001"
    assert diagnostic.message == f"`{keyword}` is a keyword and cannot be used as a name"
    assert diagnostic.help == f"rename it, for example `{keyword}_`"
    line = text.splitlines()[diagnostic.span.line - 1]
    assert line[diagnostic.span.column - 1: diagnostic.span.end_column] == keyword


# ---------------------------------------------------------------- individual checks


def test_parse_error_names_what_was_expected() -> None:
    [diagnostic] = _diagnostics("\ndef f() -> int {\n    return 1\n}\n")
    assert diagnostic.code == "E0001"
    assert diagnostic.message == "expected `;`, found `}`"
    # Like rustc, the caret stands where the `;` belongs: right after `return 1`.
    assert diagnostic.span == Span(3, 13, 3, 13)


def test_did_you_mean_for_an_unknown_field() -> None:
    text = "\nwalker W {\n    has message: str;\n    can a with entry { report self.mesage; }\n}\n"
    [diagnostic] = _diagnostics(text)
    assert (diagnostic.code, diagnostic.help) == ("E0401", "did you mean `message`?")


def test_inherited_members_are_known_to_self() -> None:
    text = ("\nwalker Base {\n    has origin: str = \"b\";\n"
            "    def helper() -> int { return 1; }\n}\n"
            "walker W(Base) {\n    can a with entry { report [self.origin, self.helper()]; }\n}\n")
    walker = _walker(text)
    assert [f.name for f in walker.__jacc_spec__.fields] == ["origin"]
    assert jacc_runtime.run(walker()) == [["b", 1]]


def test_self_members_of_a_foreign_base_are_not_checked() -> None:
    text = ("\nimport from mylib { Mixin }\nwalker W(Mixin) {\n"
            "    can a with entry { report self.anything; }\n}\n")
    mylib = types.ModuleType("mylib")
    mylib.Mixin = type("Mixin", (), {"anything": "from the mixin"})
    walker = _walker(text, mylib=mylib)
    assert issubclass(walker, mylib.Mixin) and walker.__jacc_spec__.fields == ()
    assert jacc_runtime.run(walker()) == ["from the mixin"]


def test_did_you_mean_for_an_undefined_name() -> None:
    text = "\nglob greeting = 1;\ndef f() -> int {\n    return greting;\n}\n"
    [diagnostic] = _diagnostics(text)
    assert (diagnostic.code, diagnostic.help) == ("E0402", "did you mean `greeting`?")


@pytest.mark.parametrize("definition", [
    "glob known = 1;",
    "import from os { known }",
    "import os.path as known;",
    "def known() {}",
    "walker known {}",
])
def test_names_defined_at_module_level_are_known(definition: str) -> None:
    _accepted(f"\n{definition}\ndef f() {{\n    return known;\n}}\n")


@pytest.mark.parametrize("body", [
    "x = 1; return x;",
    "for (a, b) in [] {} return a;",
    "try { pass_ = 1; } except Exception as e { return e; } return pass_;",
    "return [i for i in range(3)];",
    "return {k: v for (k, v) in {}.items()};",
    "return len(print);",
    "counter = 2; return counter;",
    "counter += 2; return counter;",
    "counter: int = 2; return counter;",
    "f = lambda (q: int) { counter = q; }; f(1); return counter;",
])
def test_local_names_are_known(body: str) -> None:
    _accepted(f"\nglob counter = 0;\ndef f(p: int = 1) {{\n    {body}\n}}\n")


def test_a_comprehension_variable_does_not_leak() -> None:
    text = "\ndef f() {\n    x = [i for i in range(3)];\n    return i;\n}\n"
    [diagnostic] = _diagnostics(text)
    assert (diagnostic.code, diagnostic.span) == ("E0402", Span(4, 12, 4, 12))


def test_await_in_async_code_is_accepted() -> None:
    walker = _walker("\nimport asyncio;\nasync def f() {\n    await asyncio.sleep(0);\n"
                     "    return 1;\n}\n"
                     "async walker W {\n    async can a with entry { report await f(); }\n}\n")
    assert walker.__jacc_spec__.is_async
    assert [a.__name__ for a in walker.__jacc_spec__.entries] == ["a"]
    assert jacc_runtime.run(walker()) == [1]


def test_await_in_a_plain_function() -> None:
    [diagnostic] = _diagnostics("\nasync def g() {}\ndef f() {\n    await g();\n}\n")
    assert diagnostic.code == "E0301"
    assert diagnostic.span == Span(4, 5, 4, 13)


def test_restspec_as_a_plain_name_is_refused() -> None:
    [diagnostic] = _diagnostics("\ndef f() {\n    return restspec;\n}\n")
    assert diagnostic.code == "E0107"


@pytest.mark.parametrize("protocol", ['"http"', '"websocket"', '"ws"', '"WS"',
                                      "APIProtocol.HTTP", "APIProtocol.WEBSOCKET"])
def test_accepted_protocol_spellings(protocol: str) -> None:
    spec = _walker(f"\n@restspec(protocol={protocol})\nasync walker W {{}}\n").__jacc_spec__
    assert spec.protocol == ("http" if "HTTP" in protocol.upper() else "websocket")
    assert (spec.broadcast, spec.public) == (False, False)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "get"])
def test_accepted_methods(method: str) -> None:
    spec = _walker(f'\n@restspec(method="{method}", path="/w")\nwalker W {{}}\n').__jacc_spec__
    assert (spec.protocol, spec.method, spec.path) == ("http", method.upper(), "/w")


def test_other_decorators_are_python_decorators() -> None:
    text = ("\nimport functools;\n@functools.cache\ndef f(x: int) -> int {\n    return x;\n}\n"
            "def tag(cls: type) -> type {\n    cls.tagged = f(1);\n    return cls;\n}\n"
            "@restspec(protocol=\"ws\")\n@tag\nasync walker W {}\n")
    walker = _walker(text)
    assert walker.tagged == 1
    assert walker.__jacc_spec__.protocol == "websocket"


def test_an_unknown_decorator_name_is_undefined() -> None:
    [diagnostic] = _diagnostics("\n@cache\ndef f() {}\n")
    assert diagnostic.code == "E0402"


# ---------------------------------------------------------------- what runs at import time


@pytest.mark.parametrize(("text", "name"), [
    ("walker A(B) {}\nwalker B {}", "B"),
    ("walker A(A) {}", "A"),
    ("glob x = y;\nglob y = 1;", "y"),
    ("glob x = x;", "x"),
    ("def f(x: int = g()) -> int {\n    return x;\n}\ndef g() -> int {\n    return 1;\n}", "g"),
    ("@deco\ndef f() {}\ndef deco(f) {\n    return f;\n}", "deco"),
    ("walker W {\n    static has n: int = LIMIT;\n}\nglob LIMIT = 1;", "LIMIT"),
    ("walker W(Mixin) {}\nimport from mylib { Mixin }", "Mixin"),
])
def test_a_name_used_at_import_time_before_its_definition(text: str, name: str) -> None:
    # Python would raise NameError when the built module is imported.
    [diagnostic] = _diagnostics("\n" + text + "\n")
    assert diagnostic.code == "E0402"
    assert diagnostic.message == f"`{name}` is used before it is defined"


def test_names_used_later_at_run_time_may_be_defined_below() -> None:
    text = ("\nglob a = 1, b = a;\nwalker W {\n    has n: int = LIMIT;\n"
            "    can go with entry { report [helper(), self.n, b]; }\n}\n"
            "def helper() -> int {\n    return LIMIT;\n}\nglob LIMIT = 7;\n")
    walker = _walker(text)
    assert [f.name for f in walker.__jacc_spec__.fields] == ["n"]
    assert jacc_runtime.run(walker()) == [[7, 7, 1]]


@pytest.mark.parametrize("text", [
    "glob Root = 1;",
    "import from mylib { APIProtocol }",
    "def restspec() {}",
    "def f(Root: int) {}",
    "def f() {\n    APIProtocol = 1;\n}",
    "def f() {\n    for Root in [] {}\n}",
])
def test_jac_builtins_cannot_be_redefined(text: str) -> None:
    # Every use of these names means the runtime's: a definition would be ignored.
    [diagnostic] = _diagnostics("\n" + text + "\n")
    assert diagnostic.code == "E0205"
    assert diagnostic.message.endswith("is built into Jac and cannot be redefined")


def test_jac_builtins_may_be_imported_from_jaclang() -> None:
    walker = _walker("\nimport from jaclang.runtimelib.server { APIProtocol, Root }\n"
                     "@restspec(protocol=APIProtocol.WEBSOCKET)\nasync walker W {\n"
                     "    async can a with Root entry { report 1; }\n}\n")
    assert walker.__jacc_spec__.protocol == "websocket"
    assert jacc_runtime.run(walker()) == [1]


@pytest.mark.parametrize("snippet", [
    "def f() {\n    pass;\n}",
    "def f() {\n    pass = 1;\n}",
    "def f(x: int) {\n    return x.pass;\n}",
])
def test_pythons_pass_is_not_a_name(snippet: str) -> None:
    # A name Python reserves would make `jacc build` write a module that does not compile.
    diagnostics = _diagnostics("\n" + snippet + "\n")
    assert diagnostics[0].code == "E0901"
    assert diagnostics[0].message == "`pass` is not supported by jacc"


# ---------------------------------------------------------------- Python's own rules


@pytest.mark.parametrize(("snippet", "message"), [
    ("f(a=1, 2)", "positional argument follows keyword argument"),
    ("f(**a, 2)", "positional argument follows keyword argument"),
    ("f(**a, *a)", "`*` argument follows a `**` argument"),
])
def test_argument_order_follows_python(snippet: str, message: str) -> None:
    # The nodes keep positional and keyword arguments apart: without this check a
    # call Python refuses would be compiled with its arguments silently reordered.
    [diagnostic] = _diagnostics(f"\ndef f(*a, **k) {{\n    return {snippet};\n}}\n")
    assert (diagnostic.code, diagnostic.message) == ("E0003", message)
    assert diagnostic.span.line == 3


def test_argument_orders_python_accepts() -> None:
    _accepted("\ndef f(*a, **k) {\n    return f(1, *a, x=1, *a, **k, y=2);\n}\n")


@pytest.mark.parametrize(("params", "message"), [
    ("*", "a bare `*` must be followed by a named parameter"),
    ("*, **k", "a bare `*` must be followed by a named parameter"),
    ("**k, a", "no parameter can follow `**k`"),
    ("*a, *b", "only one `*` is allowed among the parameters"),
    ("*a, *, b", "only one `*` is allowed among the parameters"),
])
def test_parameter_lists_python_refuses(params: str, message: str) -> None:
    [diagnostic] = _diagnostics(f"\ndef f({params}) {{}}\n")
    assert (diagnostic.code, diagnostic.message) == ("E0003", message)


@pytest.mark.parametrize("params", ["*, a", "*, a, b=1, **c", "a, *b, c, **d", "a=1, *, b"])
def test_parameter_lists_python_accepts(params: str) -> None:
    _accepted(f"\ndef f({params}) {{}}\n")


@pytest.mark.parametrize("name", ["__init__", "__new__", "__init_subclass__"])
def test_a_walker_cannot_replace_its_constructor(name: str) -> None:
    [diagnostic] = _diagnostics(f"\nwalker W {{\n    has x: int;\n    def {name}() {{}}\n}}\n")
    assert diagnostic.code == "E0205"
    assert diagnostic.span == Span(4, 9, 4, 8 + len(name))


def test_a_duplicate_ability_points_at_the_second_one() -> None:
    text = "\nwalker W {\n    can go with entry {}\n    can go with exit {}\n}\n"
    [diagnostic] = _diagnostics(text)
    assert (diagnostic.code, diagnostic.span.line, diagnostic.span.column) == ("E0202", 4, 5)


def test_pythons_own_attributes_of_self_are_known() -> None:
    text = ("\nwalker W {\n    can a with entry {\n"
            "        report [self.__class__.__name__, type(self.__dict__).__name__,\n"
            "                self.__doc__];\n"
            "    }\n}\n")
    assert jacc_runtime.run(_walker(text)()) == [["W", "dict", None]]


@pytest.mark.parametrize("name", ["__jacc_lines__", "__jacc_source__", "__file__"])
def test_names_of_the_line_table_are_reserved(name: str) -> None:
    [diagnostic] = _diagnostics(f"\nglob {name} = 1;\n")
    assert diagnostic.code == "E0205"
    assert diagnostic.message == f"`{name}` is reserved for jacc's generated code"


def test_a_nested_def_is_named_as_unsupported() -> None:
    [diagnostic] = _diagnostics("\ndef f() {\n    def g() { return 1; }\n    return g();\n}\n")
    assert diagnostic.code == "E0901"
    assert "`def` inside a function or ability is not supported" in diagnostic.message


# ---------------------------------------------------------------- Jac's own rules


@pytest.mark.parametrize("snippet", [
    "if x { x }",
    "for i in [x] { i }",
    "while x { x = 0; x }",
    "try { x } finally { }",
    "try { } except Exception { x }",
    "if x { } else { x + 1 }",
])
def test_an_expression_without_semicolon_inside_a_block_is_e0005(snippet: str) -> None:
    text = f"\ndef f(x: int) -> int {{\n    {snippet}\n    return 0;\n}}\n"
    [diagnostic] = _diagnostics(text)
    assert diagnostic.code == "E0005" and diagnostic.span.line == 3
    line = text.split("\n")[2]
    assert line[diagnostic.span.column - 2] in "xi1"  # just after the expression


@pytest.mark.parametrize("body", ["x", "x + 1", "(x, x)", "f(x)", "[i for i in [x]]",
                                  "lambda { x }", "x if x else 0"])
def test_a_final_expression_is_accepted(body: str) -> None:
    _accepted(f"\ndef f(x: int) -> any {{\n    y = 1;\n    {body}\n}}\n")


@pytest.mark.parametrize(("snippet", "message"), [
    ("1 + not 0", "`not` cannot follow `+`"),
    ("a == not b", "`not` cannot follow `==`"),
    ("a is not not b", "`not` cannot follow `is not`"),
    ("a not in not b", "`not` cannot follow `not in`"),
    ("a < not b", "`not` cannot follow `<`"),
    ("-not a", "`not` cannot follow `-`"),
    ("a ** not b", "`not` cannot follow `**`"),
])
def test_not_after_an_operator_is_a_syntax_error_as_in_python(snippet: str, message: str) -> None:
    with pytest.raises(SyntaxError):
        compile(snippet, "python", "eval")
    text = f"\ndef f(a: bool, b: list) -> bool {{\n    return {snippet};\n}}\n"
    [diagnostic] = _diagnostics(text)
    assert (diagnostic.code, diagnostic.message) == ("E0001", message)
    assert text.split("\n")[2][diagnostic.span.column - 1:].startswith("not")
    assert "parentheses" in diagnostic.help


@pytest.mark.parametrize("snippet", ["not a == b", "a and not b", "not not a", "not -a",
                                     "a if not b else not a", "[not a, not b]"])
def test_not_where_python_allows_it(snippet: str) -> None:
    _accepted(f"\ndef f(a: int, b: int) -> any {{\n    return {snippet};\n}}\n")


def test_await_stands_before_a_primary() -> None:
    text = "\nasync def f(a: int) -> int {\n    return await -a;\n}\n"
    [diagnostic] = _diagnostics(text)
    assert diagnostic.code == "E0001" and "await" in diagnostic.message


@pytest.mark.parametrize(("decorator", "code"), [
    ("@restspec(protocol=PROTOCOL)", "E0110"),
    ("@restspec(protocol=PROTOCOL, broadcast=True)", "E0110"),
    ("@restspec(protocol=make(), broadcast=True)", "E0110"),
    ("@restspec(protocol=Other.WEBSOCKET, broadcast=True)", "E0110"),
    ("@restspec(method=VERB)", "E0110"),
    ("@restspec(broadcast=FLAG)", "E0106"),
    ("@restspec(protocol=AP.GRPC)", "E0104"),
])
def test_a_restspec_value_jacc_cannot_read_is_one_clear_diagnostic(decorator: str,
                                                                   code: str) -> None:
    text = ("\nimport from jaclang.runtimelib.server { APIProtocol as AP }\n"
            "glob PROTOCOL = AP.WEBSOCKET, VERB = \"GET\", FLAG = True, Other = AP;\n"
            "def make() -> any { return AP.HTTP; }\n"
            f"{decorator}\nwalker : pub Chat {{}}\n")  # not async: no E0101 either
    [diagnostic] = _diagnostics(text)
    assert diagnostic.code == code, diagnostic
    assert "this value" not in diagnostic.message
    assert "write" in diagnostic.help or "expected" in diagnostic.help


def test_the_walker_docstring_is_the_one_before_it_and_the_first_string_the_modules() -> None:
    text = '\n"""Module."""\n"""Walker."""\nwalker : pub W {\n    """Field."""\n    has a: int;\n}\n'
    assert _walker(text).__doc__ == "Walker."
    assert _walker(text).__jacc_spec__.fields[0].doc == "Field."


@pytest.mark.parametrize("text", [
    '\ndef f() {\n    "Looks like a docstring.";\n}\n',
    '\nwalker W {\n    can go with entry {\n        """Looks like one too.""";\n    }\n}\n',
    '\nwalker W {\n    has a: int = 1;\n    """Documents nothing."""\n}\n',
    '\n"""Module."""\ndef f() {}\n"""Documents nothing."""\n',
    '\n"""Module."""\n"""Followed by another."""\n"""Walker."""\nwalker W {}\n',
])
def test_a_misplaced_docstring_is_w0003(text: str) -> None:
    compiled = compile_source(text)
    assert [w.code for w in compiled.warnings] == ["W0003"]


@pytest.mark.parametrize("text", [
    '\n"""Module."""\n"""Glob."""\nglob x = 1;\n',
    '\n"""Module."""\n"""Import."""\nimport json;\n',
    '\ndef f() -> str {\n    "a value, not a docstring"\n}\n',
    '\nglob f = lambda { "the lambda\'s value"; };\n',
])
def test_strings_that_are_not_misplaced_docstrings(text: str) -> None:
    _accepted(text)


def test_a_python_style_docstring_without_semicolon_says_where_docstrings_go() -> None:
    text = '\ndef f() -> int {\n    """Doc."""\n    return 1;\n}\n'
    [diagnostic] = _diagnostics(text)
    assert diagnostic.code == "E0001" and "docstring" in diagnostic.help


@pytest.mark.parametrize("snippet", ["lambda x: x", "lambda: 1", "lambda (x) x"])
def test_a_python_style_lambda_is_shown_the_jac_one(snippet: str) -> None:
    [diagnostic] = _diagnostics(f"\nglob f = {snippet};\n")
    assert diagnostic.code == "E0001" and "lambda (x: int) { x + 1; }" in diagnostic.help


def test_a_lambda_is_checked_like_a_function() -> None:
    text = ("\nwalker W {\n    can go with entry {\n"
            "        f = lambda (a: int, a: int) { await g(); break; return undefined_name; };\n"
            "    }\n}\n")
    codes = sorted(d.code for d in _diagnostics(text))
    assert codes == ["E0204", "E0301", "E0402", "E0402", "E0503"]


# ---------------------------------------------------------------- served functions and streams


def test_served_functions_and_streams_are_accepted() -> None:
    compiled = _accepted(
        "\nimport from jaclang.runtimelib.server { APIProtocol }\n"
        "def:pub add(a: int, b: int = 1) -> int { return a + b; }\n"
        "@restspec(protocol=APIProtocol.WEBSOCKET)\n"
        "def:pub echo(message: str, *, loud: bool = False) -> dict { return {\"m\": message}; }\n"
        "@restspec(protocol=APIProtocol.WEBSOCKET)\n"
        "async def:pub words(text: str) { for w in text.split() { yield w; } return; }\n"
        "@restspec(protocol=APIProtocol.WEBSOCKET, broadcast=True)\n"
        "def announce(text: str) -> str { return text; }\n"
        "@restspec(method=\"GET\", path=\"/sum\")\n"
        "def total(limit: int) -> int { return sum(range(limit)); }\n"
        "def helper(x, *rest, **named) { yield from rest; }\n"
        "@restspec(protocol=APIProtocol.WEBSOCKET, stream=True)\n"
        "async walker : pub Progress {\n"
        "    can go with entry { report 1; }\n"
        "    def steps(n: int) { yield from range(n); }\n"
        "}\n")
    namespace: dict = {"__name__": "served"}
    exec(compiled.code, namespace)
    specs = {name: namespace[name].__jacc_spec__ for name in ("add", "echo", "words",
                                                                "announce", "total")}
    assert {name: (s.protocol, s.public, s.stream) for name, s in specs.items()} == {
        "add": ("http", True, False), "echo": ("websocket", True, False),
        "words": ("websocket", True, True), "announce": ("websocket", False, False),
        "total": ("http", False, False)}
    assert specs["announce"].broadcast and specs["total"].method == "GET"
    assert specs["total"].path == "/sum"
    assert not hasattr(namespace["helper"], "__jacc_spec__")
    assert namespace["Progress"].__jacc_spec__.stream
    assert list(namespace["Progress"]().steps(2)) == [0, 1]


@pytest.mark.parametrize(("snippet", "message"), [
    ("async def gen() { yield from [1]; }", "`yield from` cannot be used in an async function"),
    ("async def gen() { yield 1; return 2; }",
     "`return` with a value in an async function that yields"),
])
def test_python_generator_rules_are_diagnosed(snippet: str, message: str) -> None:
    [diagnostic] = _diagnostics("\n" + snippet + "\n")
    assert (diagnostic.code, diagnostic.message) == ("E0003", message)


def test_a_private_def_without_restspec_is_a_helper() -> None:
    namespace: dict = {"__name__": "helpers"}
    exec(_accepted("\ndef:priv secret(x) { return x; }\ndef plain(x) { return x; }\n").code,
         namespace)
    assert not hasattr(namespace["secret"], "__jacc_spec__")
    assert not hasattr(namespace["plain"], "__jacc_spec__")


def test_a_lambda_cannot_yield() -> None:
    [diagnostic] = _diagnostics("\ndef f() {\n    g = lambda { yield 1; };\n    return g;\n}\n")
    assert (diagnostic.code, diagnostic.message) == ("E0506", "`yield` in a lambda")
