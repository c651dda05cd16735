"""The build cache (`jacc.cache`, through `compiler.program_file`): an unchanged
file is compiled once; a changed, stale, damaged or unwritable entry is the same
as no entry."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

import jacc.compiler
from jacc import cache
from jacc.compiler import compile_file, execute, program_file

# A warning to keep (the legacy `root), and a line 6 to raise from.
APP = '''
walker : pub W {
    has n: int = 0;
    can go with `root entry {
        report self.n;
        raise ValueError("from line 6");
    }
}
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.jac"
    path.write_text(APP, encoding="utf-8")
    return path


def _entries(app: Path) -> list[Path]:
    return sorted((app.parent / cache.FOLDER).glob("*.code"))


def test_an_unchanged_file_is_not_parsed_again(app: Path, monkeypatch) -> None:
    warnings = compile_file(app).warnings
    first = program_file(app)
    assert _entries(app) == [cache.entry_path(app)]
    monkeypatch.setattr(jacc.compiler, "parse_module", None)  # any parse would fail
    second = program_file(app)
    assert second.code == first.code
    assert second.warnings == first.warnings == warnings != []
    assert second.source == first.source


def test_cached_code_runs_and_names_the_jac_line(app: Path) -> None:
    program_file(app)
    program = program_file(app)
    walker = execute(program, app).W
    with pytest.raises(ValueError) as raised:
        import jacc_runtime

        jacc_runtime.run(walker())
    frames = traceback.extract_tb(raised.value.__traceback__)
    assert (frames[-1].filename, frames[-1].lineno) == (str(app.resolve()), 6)


def test_a_changed_file_is_compiled_again_into_the_same_entry(app: Path) -> None:
    program_file(app)
    app.write_text(APP.replace("n: int = 0", "n: int = 1"), encoding="utf-8")
    program = program_file(app)
    assert execute(program, app).W().n == 1
    assert _entries(app) == [cache.entry_path(app)]


def test_another_compiler_does_not_read_the_entry(app: Path, monkeypatch) -> None:
    program_file(app)
    # A new jacc (or grammar, or Python) has another fingerprint.
    monkeypatch.setattr(cache, "_compiler_fingerprint", lambda: b"another jacc")
    parsed = []
    real = jacc.compiler.parse_module
    monkeypatch.setattr(jacc.compiler, "parse_module", lambda s: parsed.append(s) or real(s))
    program_file(app)
    assert len(parsed) == 1


@pytest.mark.parametrize("damage", [
    lambda data: data[:-1],  # cut short
    lambda data: data[:-10] + bytes(10),  # the payload overwritten
    lambda data: b"",
    lambda data: b"garbage" * 100,
    lambda data: data[:30] + b"x" + data[31:],  # the key
])
def test_a_damaged_entry_is_compiled_again(app: Path, damage, monkeypatch) -> None:
    expected = execute(program_file(app), app).W().n
    entry = cache.entry_path(app)
    entry.write_bytes(damage(entry.read_bytes()))
    parsed = []
    real = jacc.compiler.parse_module
    monkeypatch.setattr(jacc.compiler, "parse_module", lambda s: parsed.append(s) or real(s))
    assert execute(program_file(app), app).W().n == expected
    assert len(parsed) == 1
    program_file(app)  # and the entry is good again
    assert len(parsed) == 1


def test_without_a_writable_folder_there_is_no_cache(app: Path) -> None:
    (app.parent / ".jacc").write_text("not a folder", encoding="utf-8")
    program = program_file(app)
    assert execute(program, app).W().n == 0
    assert not _entries(app)


def test_errors_are_not_cached(app: Path) -> None:
    app.write_text("\nwalker W {", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(jacc.compiler.JacError):
            program_file(app)
    assert not _entries(app)


def test_the_key_covers_text_and_file_name() -> None:
    keys = {cache.key("a", "/x/app.jac"), cache.key("b", "/x/app.jac"),
            cache.key("a", "/y/app.jac"), cache.key("", "/x/app.jaca"),
            cache.key("a", "/x/app.jac")}
    assert len(keys) == 4
