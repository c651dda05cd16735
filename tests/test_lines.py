"""An exception raised inside an ability names `app.jac` and the line of the Jac
statement that raised it (docs/language.md), for a module built by `jacc build`
(line table + traceback rewrite) and for one compiled in memory (located `ast`)."""

from __future__ import annotations

import importlib.util
import re
import traceback
import types
from pathlib import Path

import pytest

import jacc_runtime
from jacc.compiler import build_file, compile_source, load_module

# The source starts with a blank line, so "line 1" is never right by accident;
# the line numbers in the comments are the ones the tests expect.
APP = '''
import from jaclang.runtimelib.server { APIProtocol }

def explode(x: int) -> int {
    y = x + 1;
    raise ValueError(f"helper {y}");                     # 6
}

walker : pub Direct {
    has n: int = 0;
    can go with entry {
        report self.n;
        raise RuntimeError("direct");                    # 13
    }
}

walker : pub ViaHelper {
    can go with entry {
        report "before";
        value = explode(3);                              # 20
        report value;
    }
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub ViaMethod {
    has items: list = [];

    def check(self_count: int) -> None {
        if self_count > 0 {
            for item in self.items {
                assert item != "bad", f"bad item {item}";    # 32
            }
        }
    }

    async can go with Root entry {
        report len(self.items);
        self.check(len(self.items));                     # 39
    }
}

walker : pub Expression {
    has d: dict = {};
    can go with entry {
        total = 0;
        total = total + 1;
        report {
            "a": 1,
            "b": self.d["missing"]                       # 50
        };
    }
    can later with exit {
        report "never";
    }
}
'''


def _source_line(number: int) -> str:
    return APP.split("\n")[number - 1]


def _built(tmp_path: Path) -> types.ModuleType:
    (tmp_path / "app.jac").write_text(APP, encoding="utf-8")
    out = tmp_path / "build" / "app.py"
    out.parent.mkdir()
    build_file(tmp_path / "app.jac", out)
    spec = importlib.util.spec_from_file_location("jacc_test_lines_built", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_memory(tmp_path: Path) -> types.ModuleType:
    (tmp_path / "app.jac").write_text(APP, encoding="utf-8")
    return load_module(tmp_path / "app.jac")


def _from_text() -> types.ModuleType:
    # What a server does with text it holds: `compile_source` names the file `app.jac`.
    module = types.ModuleType("jacc_test_lines_text")
    exec(compile_source(APP).code, module.__dict__)
    return module


@pytest.fixture(params=["built", "in_memory", "from_text"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> types.ModuleType:
    if request.param == "built":
        return _built(tmp_path)
    return _in_memory(tmp_path) if request.param == "in_memory" else _from_text()


def _traceback_of(walker: jacc_runtime.Walker, error: type[BaseException]) -> str:
    with pytest.raises(error) as info:
        jacc_runtime.run(walker)
    return "".join(traceback.format_exception(info.value))


def _frames(text: str) -> list[tuple[str, int, str]]:
    return [(file, int(line), name)
            for file, line, name in re.findall(r'File "(.*)", line (\d+), in (\S+)', text)]


def _jac_frames(text: str) -> list[tuple[int, str]]:
    return [(line, name) for file, line, name in _frames(text) if file.endswith("app.jac")]


def test_the_sanity_of_the_expected_lines() -> None:
    assert APP.startswith("\n")
    assert "RuntimeError" in _source_line(13)
    assert "explode(3)" in _source_line(20)
    assert "ValueError" in _source_line(6)
    assert "assert item" in _source_line(32)
    assert "self.check" in _source_line(39)
    assert '"b"' in _source_line(50)


def test_raise_in_an_ability(app: types.ModuleType) -> None:
    text = _traceback_of(app.Direct(n=1), RuntimeError)
    assert re.search(r'File ".*app\.jac", line 13, in go\b', text), text
    if app.__name__ != "jacc_test_lines_text":  # text with no file has no line to show
        assert 'raise RuntimeError("direct")' in text  # the Jac line itself is shown
    assert _jac_frames(text) == [(13, "go")]


def test_raise_in_a_helper_def(app: types.ModuleType) -> None:
    text = _traceback_of(app.ViaHelper(), ValueError)
    assert re.search(r'File ".*app\.jac", line 20, in go\b', text), text
    assert re.search(r'File ".*app\.jac", line 6, in explode\b', text), text
    assert _jac_frames(text) == [(20, "go"), (6, "explode")]


def test_raise_in_a_method_of_an_async_walker(app: types.ModuleType) -> None:
    text = _traceback_of(app.ViaMethod(items=["ok", "bad"]), AssertionError)
    assert "bad item bad" in text
    assert _jac_frames(text) == [(39, "go"), (32, "check")]


def test_error_inside_a_multi_line_statement(app: types.ModuleType) -> None:
    text = _traceback_of(app.Expression(), KeyError)
    (line, name), = _jac_frames(text)
    # Compiled in memory, Python names the line of the failing subexpression (50);
    # the built module's table maps whole statements (48). Either is a line of the
    # offending statement, never a line of the generated module.
    assert name == "go" and line in (48, 50), text


def test_no_frame_points_at_generated_python(tmp_path: Path) -> None:
    module = _built(tmp_path)
    text = _traceback_of(module.ViaHelper(), ValueError)
    generated = [f for f in _frames(text) if f[0].endswith("app.py")]
    assert generated == [], text


def test_built_module_is_not_relocated_outside_its_walkers(tmp_path: Path) -> None:
    # The line table is only consulted for frames of the built module itself.
    module = _built(tmp_path)
    assert module.__jacc_source__ == "../app.jac"
    assert Path(module.__file__).parent.joinpath(module.__jacc_source__).resolve() == (
        tmp_path / "app.jac").resolve()


def test_in_memory_filename_is_the_jac_file(tmp_path: Path) -> None:
    module = _in_memory(tmp_path)
    text = _traceback_of(module.Direct(), RuntimeError)
    (file, line, name), = [f for f in _frames(text) if f[0].endswith(".jac")]
    assert Path(file) == (tmp_path / "app.jac").resolve()
    assert (line, name) == (13, "go")


def test_reports_before_the_error_are_not_lost_in_the_traceback(app: types.ModuleType) -> None:
    walker = app.Direct(n=7)
    with pytest.raises(RuntimeError):
        jacc_runtime.run(walker)
    assert walker._jacc_reports == [7]


# Each body raises on the line marked `# here` (the first of a multi-line statement
# where Python reports the statement's start); every statement kind that codegen
# emits and a traceback can stop in.
STATEMENTS = {
    "if_test": "x = 0;\nif 1 / x {  # here\n    report 1;\n}",
    "elif_test": "x = 0;\nif x {\n    report 1;\n} elif 1 / x {  # here\n    report 2;\n}",
    "else_body": "x = 0;\nif x {\n    report 1;\n} else {\n    report 1 / x;  # here\n}",
    "for_iter": "for i in 1 / 0 {  # here\n    report i;\n}",
    "for_body": "for i in [1, 0] {\n    report 1 / i;  # here\n}",
    "while_test": "x = 0;\nwhile 1 / x {  # here\n    x += 1;\n}",
    "try_body": "try {\n    report 1 / 0;  # here\n} finally {\n    report 2;\n}",
    "except_body": ("try {\n    report 1 / 0;\n} except ZeroDivisionError {\n"
                    "    raise KeyError(1);  # here\n}"),
    "finally_body": "try {\n    report 1;\n} finally {\n    report {}[0];  # here\n}",
    "comprehension": "report [1 / i for i in [1, 0]];  # here",
    "assert": "assert False, \"no\";  # here",
    "augmented": "x = 1;\nx /= 0;  # here",
    "del": "d = {};\ndel d[\"k\"];  # here",
    "f_string": "report f\"{1 / 0}\";  # here",
    "call_in_arg": "report len(\n    5);  # here-1",
    "lambda": "report (lambda (x: int) { 1 / x; })(0);  # here",
    "lambda_body": "report (lambda { x = 0; return 1 / x; })();  # here",
    "lambda_in_comprehension": "report [(lambda { y = 1 / i; return y; })() for i in [0]];  # here",
    "tail_expression": "report (lambda { 1 / 0 })();  # here",
}


def test_a_multi_line_lambda_names_the_line_inside_it(tmp_path: Path) -> None:
    source = ("\n\nwalker : pub W {\n    can go with entry {\n        f = lambda (x: int) {\n"
              "            y = x - 1;\n            return 1 / y;\n        };\n"
              "        report f(1);\n    }\n}\n")
    (tmp_path / "app.jac").write_text(source, encoding="utf-8")
    build_file(tmp_path / "app.jac", tmp_path / "app.py")
    spec = importlib.util.spec_from_file_location("jacc_test_lambda_lines", tmp_path / "app.py")
    built = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(built)
    for module in (built, load_module(tmp_path / "app.jac")):
        with pytest.raises(ZeroDivisionError) as info:
            jacc_runtime.run(module.W())
        text = "".join(traceback.format_exception(info.value))
        assert [line for line, _ in _jac_frames(text)] == [9, 7], text


def _case_source(body: str) -> tuple[str, int]:
    indented = "\n".join("        " + line for line in body.split("\n"))
    source = f"\n\nwalker : pub W {{\n    can go with entry {{\n{indented}\n    }}\n}}\n"
    lines = source.split("\n")
    marked = next(i for i, line in enumerate(lines, 1) if "# here" in line)
    offset = int(lines[marked - 1].split("# here")[1] or 0)
    return source, marked + offset


@pytest.mark.parametrize("mode", ["built", "in_memory"])
@pytest.mark.parametrize("case", sorted(STATEMENTS))
def test_every_statement_kind_maps_to_its_line(case: str, mode: str, tmp_path: Path) -> None:
    source, expected = _case_source(STATEMENTS[case])
    (tmp_path / "app.jac").write_text(source, encoding="utf-8")
    if mode == "built":
        build_file(tmp_path / "app.jac", tmp_path / "app.py")
        spec = importlib.util.spec_from_file_location(f"jacc_test_case_{case}", tmp_path / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = load_module(tmp_path / "app.jac")
    with pytest.raises(Exception) as info:
        jacc_runtime.run(module.W())
    text = "".join(traceback.format_exception(info.value, chain=False))
    frames = _jac_frames(text)
    assert frames and frames[0] == (expected, "go"), text
    # A comprehension runs in a frame of its own, on the same line.
    assert all(line == expected for line, _ in frames), text
