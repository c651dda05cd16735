"""Benchmark: `jacc build` on a generated program of 500 seed-like walkers.

Prints wall time and peak memory of `jacc build` as a whole process, next to the
baseline of CPython byte-compiling the emitted module (also a whole process),
and their ratio. Target on a 2-core machine: under 0.5 s and 100 MB (the
reference's `jac jac2py` needs 7.5 s and 449 MB on such a file).

    python bench/compile.py [--walkers 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def generate(walkers: int) -> str:
    parts = ["import from jaclang.runtimelib.server { APIProtocol }\n"]
    for i in range(walkers):
        parts.append(WALKER.format(i=i, broadcast=", broadcast=True" if i % 3 == 0 else "",
                                   access=": pub " if i % 2 == 0 else ""))
    return "".join(parts)


def timed_process(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    pid = subprocess.Popen(command, stdout=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walkers", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        app = Path(folder) / "app.jac"
        app.write_text(generate(args.walkers), encoding="utf-8")
        out = Path(folder) / "app.py"
        lines = app.read_text().count("\n")
        build = [sys.executable, "-m", "jacc", "build", str(app), "-o", str(out)]
        byte_compile = [sys.executable, "-m", "py_compile", str(out)]
        timed_process(build)  # warm the grammar cache and the OS file cache
        builds = [timed_process(build) for _ in range(args.runs)]
        compiles = [timed_process(byte_compile) for _ in range(args.runs)]

    build_time = statistics.median(t for t, _ in builds)
    build_mem = max(m for _, m in builds)
    compile_time = statistics.median(t for t, _ in compiles)
    compile_mem = max(m for _, m in compiles)
    print(f"program: {args.walkers} walkers, {lines} lines of Jac; median of {args.runs} runs")
    print(f"{'':24}{'wall s':>10}{'peak MB':>10}")
    print(f"{'jacc build':24}{build_time:>10.3f}{build_mem:>10.1f}")
    print(f"{'python -m py_compile':24}{compile_time:>10.3f}{compile_mem:>10.1f}")
    print(f"ratio build / byte-compile: {build_time / compile_time:.1f}x "
          f"(target: build under 0.5 s and 100 MB)")


if __name__ == "__main__":
    main()
