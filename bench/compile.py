"""Benchmark: `jacc build` on a generated program of 500 seed-like walkers.

Whole processes first: `jacc build` against CPython byte-compiling the module it
wrote (`python -m py_compile`), CPU time, wall time and peak memory, and their
ratio. Target: the build at most 5x the byte-compile's CPU time, at most 80 MB
(the reference's `jac jac2py` needs 7.5 s and 449 MB on such a file).

Then each lever of the build's speed, both sides measured in this run:

- reading a file (lexing, parsing and lowering): Lark's own LALR driver against
  `jacc.lalr` on the same tables, with the same lexer and `lower`, and Lark's with
  the garbage collector running, as `jacc build` ran it before;
- the `.py` text: `ast.unparse` and `ast.parse` for the line table, against `jacc.emit`;
- the garbage collector running during a build, against paused (`jacc.compiler`);
- `serve` loading the program: compiling it, against the build cache (`jacc.cache`);
- starting `jacc build`: its imports, against the same with the server's.

CPU times are the least of `--runs` runs, the two sides taken in turn, since the
machine is shared (the least is the run that was disturbed least); wall times
are medians.

    python bench/compile.py [--walkers 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

WALKER = '''
"""Walker number {i}."""
@restspec(protocol=APIProtocol.WEBSOCKET{broadcast})
async walker {access}Walker{i} {{
    has message: str;
    has sender: str = "anonymous", tags: list[str] = [];

    async can handle with Root entry {{
        words = [w.upper() for w in self.message.split() if w];
        report {{"type": "message", "sender": self.sender, "content": self.message, "n": {i}}};
        report {{"words": words, "tags": self.tags, "count": len(words) + {i}}};
    }}
}}
'''

CPU_TARGET = 5.0  # × the byte-compile's CPU time
MEMORY_TARGET = 80.0  # MB


def generate(walkers: int) -> str:
    parts = ["import from jaclang.runtimelib.server { APIProtocol }\n"]
    for i in range(walkers):
        parts.append(WALKER.format(i=i, broadcast=", broadcast=True" if i % 3 == 0 else "",
                                   access=": pub " if i % 2 == 0 else ""))
    return "".join(parts)


# ---------------------------------------------------------------- whole processes


# An installed jacc has its modules byte-compiled (pip does it); a development
# shell that sets PYTHONDONTWRITEBYTECODE would have every child compile all of
# jacc's sources again (40 ms), which no user's `jacc build` does.
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed_process(command: list[str]) -> tuple[float, float, float]:
    """CPU seconds (user + system), wall seconds and peak RSS (MB) of one child."""
    start = time.perf_counter()
    pid = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=_CHILD_ENV).pid
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def compare_processes(commands: dict[str, list[str]], runs: int) -> dict[str, tuple]:
    """(least CPU, median wall, most memory) of each command, run in turn."""
    samples: dict[str, list] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(timed_process(command))
    return {name: (min(s[0] for s in runs_), statistics.median(s[1] for s in runs_),
                   max(s[2] for s in runs_)) for name, runs_ in samples.items()}


# ---------------------------------------------------------------- levers, in this process


def least_cpu(sides: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """The least CPU time of each side, the sides run in turn; the collector is
    as each side leaves it (its state is part of what some levers compare)."""
    best = {name: float("inf") for name in sides}
    for _ in range(runs):
        for name, run in sides.items():
            gc.collect()
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    return best


def collector(running: bool, run: Callable[[], object]) -> Callable[[], object]:
    def side() -> object:
        was = gc.isenabled()
        (gc.enable if running else gc.disable)()
        try:
            return run()
        finally:
            (gc.enable if was else gc.disable)()
    return side


def lever_rows(text: str, folder: Path, runs: int) -> list[tuple[str, float, float]]:
    import jacc.compiler
    from jacc import emit, parser
    from jacc.compiler import compile_source, program_file
    from jacc.source import Source

    source = Source("app.jac", text)
    parser._driver()  # the tables, loaded once as in any process
    rows = []

    lark = lambda: parser._lark().parse(text, start="start")  # noqa: E731
    ours = lambda: parser.parse_module(source)  # noqa: E731
    reading = least_cpu({"before": collector(True, lark), "lark": collector(False, lark),
                         "ours": collector(False, ours)}, runs)
    rows.append(("reading a file: Lark's LALR driver -> jacc.lalr",
                 reading["lark"], reading["ours"]))
    rows.append(("  the same, Lark's with the collector running",
                 reading["before"], reading["ours"]))

    tree = compile_source(text).tree

    def reparsed() -> None:
        body = ast.unparse(tree)
        emit.line_table_by_reparse(tree, body + "\n")

    text_of = least_cpu({"before": collector(False, reparsed),
                         "after": collector(False, lambda: emit.module_source(tree, "app.jac"))},
                        runs)
    rows.append((".py text: ast.unparse + ast.parse -> jacc.emit",
                 text_of["before"], text_of["after"]))

    def build() -> None:
        emit.module_source(compile_source(text).tree, "app.jac")

    def build_collecting() -> None:
        paused = jacc.compiler._collector_paused
        jacc.compiler._collector_paused = contextlib.nullcontext
        try:
            build()
        finally:
            jacc.compiler._collector_paused = paused

    collecting = least_cpu({"before": collector(True, build_collecting),
                            "after": collector(True, build)}, runs)
    rows.append(("compile + .py text: collector running -> paused",
                 collecting["before"], collecting["after"]))

    app = folder / "served.jac"
    app.write_text(text, encoding="utf-8")

    def cold() -> None:
        for entry in (folder / ".jacc" / "cache").glob("*"):
            entry.unlink()
        program_file(app)

    loading = least_cpu({"before": collector(True, cold),
                         "after": collector(True, lambda: program_file(app))}, runs)
    rows.append(("serve loading it: compile -> build cache", loading["before"], loading["after"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walkers", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    text = generate(args.walkers)

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        app, out = folder / "app.jac", folder / "app.py"
        app.write_text(text, encoding="utf-8")
        build = [sys.executable, "-m", "jacc", "build", str(app), "-o", str(out)]
        timed_process(build)  # warm the grammar cache, jacc's bytecode and the OS file cache
        whole = compare_processes({
            "jacc build": build,
            "python -m py_compile": [sys.executable, "-m", "py_compile", str(out)],
        }, args.runs)
        imports = compare_processes({
            "before": [sys.executable, "-c", "import jacc.cli, jacc.compiler, jacc_runtime.server"],
            "after": [sys.executable, "-c", "import jacc.cli, jacc.compiler"],
        }, args.runs)
        levers = lever_rows(text, folder, args.runs)

    print(f"program: {args.walkers} walkers, {text.count(chr(10))} lines of Jac; "
          f"CPU s: least of {args.runs} runs, wall s: median")
    print(f"\n{'whole process':34}{'CPU s':>9}{'wall s':>9}{'peak MB':>9}")
    for name, (cpu, wall, memory) in whole.items():
        print(f"{name:34}{cpu:>9.3f}{wall:>9.3f}{memory:>9.1f}")
    (build_cpu, _, build_mb), (compile_cpu, _, _) = whole.values()
    ratio = build_cpu / compile_cpu
    verdict = "met" if ratio <= CPU_TARGET and build_mb <= MEMORY_TARGET else "NOT met"
    print(f"ratio build / byte-compile: {ratio:.1f}x CPU, {build_mb:.0f} MB "
          f"(target: at most {CPU_TARGET:g}x and {MEMORY_TARGET:g} MB: {verdict})")

    print(f"\n{'lever (CPU s)':52}{'before':>9}{'after':>9}{'gain':>8}")
    levers.append(("starting jacc build: imports -> without the server's",
                   imports["before"][0], imports["after"][0]))
    for name, before, after in levers:
        print(f"{name:52}{before:>9.3f}{after:>9.3f}{before / after:>7.1f}x")


if __name__ == "__main__":
    main()
