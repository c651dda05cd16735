"""The wheel carries the grammar and the runtime under its own import name, and an
installed `jacc` works from any folder (the grammar is found as package data, not
beside the repo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOOD = '''
@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Echo {
    has message: str;
    async can echo with Root entry { report {"echo": self.message}; }
}
'''
BAD = '''
@restspec(protocol=APIProtocol.WEBSOCKET)
walker : pub Echo {
    can echo with entry { report 1; }
}
'''

pytestmark = pytest.mark.slow  # left out of `make test-fast`


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy so that the build's scratch folders never land in the repo.
    tree = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("jacc", "grammar", "runtime"):
        shutil.copytree(REPO / name, tree / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, tree / name)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(tree)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (found,) = out.glob("*.whl")
    return found


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_ships_the_grammar_inside_the_package(wheel: Path) -> None:
    names = _names(wheel)
    assert "jacc/grammar/jac.lark" in names
    assert "jacc/grammar/__init__.py" in names
    assert not any(name.startswith("grammar/") for name in names)


def test_wheel_ships_the_runtime_under_its_import_name(wheel: Path) -> None:
    names = _names(wheel)
    for module in ("__init__", "walker", "lines"):
        assert f"jacc_runtime/{module}.py" in names
    assert not any(name.startswith("runtime/") for name in names)
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert set(archive.read(top_level).decode().split()) == {"jacc", "jacc_runtime"}


def test_wheel_ships_the_console_and_jacc_js(wheel: Path) -> None:
    names = _names(wheel)
    static = REPO / "runtime" / "server" / "static"
    for path in static.iterdir():
        assert f"jacc_runtime/server/static/{path.name}" in names
    assert "jacc_runtime/server/static/jacc.js" in names


def test_installed_wheel_serves_the_console(wheel: Path, tmp_path: Path) -> None:
    # Read as package data, the way browser.py does, from the unpacked wheel only.
    site = _installed(wheel, tmp_path)
    code = (
        "import importlib.resources, jacc_runtime.server as s; "
        "print(s.__file__); "
        "static = importlib.resources.files('jacc_runtime.server') / 'static'; "
        "print(len((static / 'console.html').read_bytes()), len((static / 'jacc.js').read_bytes()))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    where, sizes = result.stdout.splitlines()
    assert Path(where).is_relative_to(site)
    assert all(int(size) > 0 for size in sizes.split())


def test_wheel_declares_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        text = archive.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert "jacc = jacc.cli:main" in text


def _installed(wheel: Path, tmp_path: Path) -> Path:
    """The wheel unpacked as an installer would put a pure-Python wheel in site-packages."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def _run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # PYTHONPATH comes before site-packages (and the repo's editable install), so the
    # unpacked wheel is what runs; the child prints where `jacc` came from first.
    code = (
        "import sys, jacc, jacc.grammar, jacc_runtime; "
        "print(jacc.__file__, jacc_runtime.__file__, sep='\\n', file=sys.stderr); "
        "from jacc.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_installed_wheel_checks_a_program_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    site = _installed(wheel, tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "app.jac").write_text(GOOD, encoding="utf-8")
    (work / "bad.jac").write_text(BAD, encoding="utf-8")

    good = _run_installed(site, work, "check", "app.jac")
    loaded_from = good.stderr.splitlines()[:2]
    assert all(Path(p).is_relative_to(site) for p in loaded_from), loaded_from
    assert good.returncode == 0, good.stderr

    bad = _run_installed(site, work, "check", "bad.jac")
    assert bad.returncode == 1, bad.stderr
    assert "error[E0101]" in bad.stderr

    built = _run_installed(site, work, "build", "app.jac", "-o", "out.py")
    assert built.returncode == 0, built.stderr
    assert "import jacc_runtime" in (work / "out.py").read_text(encoding="utf-8")


def test_console_script_works_outside_the_repo(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "jacc"
    assert script.exists(), "the `jacc` console script is not installed in this environment"
    (tmp_path / "app.jac").write_text(GOOD, encoding="utf-8")
    result = subprocess.run([str(script), "check", "app.jac"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
