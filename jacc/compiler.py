"""The only place the stages meet: parse → check → generate → compile.

    compile_source(text, name)  → Compiled (located Python AST, warnings)
    program_file(path)          → Program (code, warnings), through the build cache
    load_module(path)           → an executed module, compiled in memory
    build_file(path, out)       → writes the `.py` that `jacc build` promises
    check_file(path)            → warnings (errors raise `JacError`)
"""

from __future__ import annotations

import ast
import contextlib
import gc
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .checker import check
from .codegen import generate
from .depth import MAX_BLOCKS, deep_enough, deepest, span_of, too_deep
from .diagnostics import Diagnostic, InputError, JacError, sort_diagnostics
from .emit import UnwritableModule, module_source
from .parser import parse_module
from .source import Source, Span


@dataclass(frozen=True)
class Compiled:
    source: Source
    tree: ast.Module  # located: positions are the .jac file's
    code: types.CodeType
    warnings: list[Diagnostic]


@dataclass(frozen=True)
class Program:
    """What running a program takes: from a compile, or from the build cache."""

    source: Source
    code: types.CodeType  # its positions are the .jac file's
    warnings: list[Diagnostic]


@dataclass(frozen=True)
class Built:
    path: Path
    source: Source
    warnings: list[Diagnostic]


def compile_source(text: str, name: str = "app.jac", filename: str | None = None) -> Compiled:
    """Compile Jac source text; raise `JacError` with every diagnostic if it is wrong.

    `name` is how diagnostics refer to the file; `filename` (default: `name`) is
    what tracebacks of the compiled code show.
    """
    with _collector_paused():
        return _compile(Source(name, text), filename or name)


def _compile(source: Source, filename: str) -> Compiled:
    module = parse_module(source)  # never recursive: any depth parses (jacc.depth)
    with deep_enough():
        diagnostics = check(module)
        if any(d.is_error for d in diagnostics):
            raise JacError(source, diagnostics)
        tree = generate(module)
        try:
            code = compile(tree, filename, "exec", dont_inherit=True)
        except SyntaxError as error:
            # The checker should have caught it; still the user's program, never a traceback.
            raise JacError(source, diagnostics + [_python_syntax_error(error)]) from None
        except (RecursionError, MemoryError):
            # Past this Python's own limits (other versions recurse in C, with limits of
            # their own): still the user's program, so say where.
            raise JacError(source, diagnostics + [too_deep(
                span_of(deepest(tree)), "code nested too deeply for Python's compiler",
                "split the expression or the statement, for example with intermediate "
                "variables")]) from None
    warnings = sort_diagnostics([d for d in diagnostics if not d.is_error])
    return Compiled(source, tree, code, warnings)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector while a program compiles.

    Compiling allocates tens of thousands of objects that all live to the end
    (tokens, nodes, the `ast`), and the collector, which runs every 700 new
    objects and now and then over all of them, finds nothing to free: it took
    two fifths of the time to compile and write bench/compile.py's program.
    Cycles made meanwhile wait for its next run.
    """
    if not gc.isenabled():  # already paused, by a caller or an outer compile
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _python_syntax_error(error: SyntaxError) -> Diagnostic:
    line = error.lineno or 1
    column = error.offset or 1
    span = Span(line, column, line, column)
    if error.msg == "too many statically nested blocks":
        return too_deep(span, f"loops and `try` blocks nested too deeply: limit {MAX_BLOCKS}",
                        f"Python allows at most {MAX_BLOCKS} of them, one inside the other, "
                        "in one function: move the inner ones into a function of their own")
    return Diagnostic("E0003", f"invalid program: {error.msg}", span)


def read_source(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: the file is not valid UTF-8 "
                         f"(byte {error.start})") from None


def compile_file(path: Path) -> Compiled:
    path = Path(path)
    return compile_source(read_source(path), str(path), str(path.resolve()))


def program_file(path: Path) -> Program:
    """`compile_file`'s code and warnings, read from the build cache beside the
    file (`jacc.cache`) when the same text was compiled before, else compiled
    and kept there. What `serve` (and `--dev`, at every save) runs."""
    from . import cache  # hashlib and tempfile: 8 ms that `build` and `check` do without

    path = Path(path)
    text, filename = read_source(path), str(path.resolve())
    entry, made_for = cache.entry_path(path), cache.key(text, filename)
    cached = cache.load(entry, made_for)
    if cached is not None:
        return Program(Source(str(path), text), *cached)
    compiled = compile_source(text, str(path), filename)
    cache.store(entry, made_for, compiled.code, compiled.warnings)
    return Program(compiled.source, compiled.code, compiled.warnings)


def check_file(path: Path) -> list[Diagnostic]:
    return compile_file(path).warnings


def load_module(path: Path, name: str | None = None) -> types.ModuleType:
    """Compile a `.jac` file in memory and execute it as a fresh module."""
    path = Path(path)
    return execute(compile_file(path), path, name)


def execute(program: Compiled | Program, path: Path, name: str | None = None
            ) -> types.ModuleType:
    """Run compiled code as a fresh module; whatever its top level raises propagates."""
    module = types.ModuleType(name or path.stem)
    module.__file__ = str(path.resolve())
    exec(program.code, module.__dict__)
    return module


def build_file(path: Path, output: Path | None = None) -> Built:
    """Write the Python module for `path` (default: `app.py` beside `app.jac`)."""
    path = Path(path)
    output = Path(output) if output is not None else path.with_suffix(".py")
    with _collector_paused():
        compiled = compile_file(path)
        try:
            text = module_source(compiled.tree, _relative_source(path, output))
        except UnwritableModule as error:
            raise JacError(compiled.source, [error.diagnostic]) from None
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot write {output}: {error.strerror}") from None
    return Built(output, compiled.source, compiled.warnings)


def _relative_source(source: Path, output: Path) -> str:
    """The source as seen from the output's folder, so tracebacks find it."""
    import os

    return os.path.relpath(source.resolve(), output.resolve().parent)
