"""Tracebacks of built modules point at the `.jac` source, not the generated `.py`.

A module compiled in memory carries Jac positions in its code objects already.
A module written by `jacc build` is `ast.unparse` output, which has lost them, so
codegen appends a line table `__jacc_lines__ = {py_line: jac_line}` and the name
of its source in `__jacc_source__`. When an exception leaves a walker, `relocate`
swaps each frame of such a module for a stand-in frame at the Jac line (the
technique of Jinja2's `debug.py`).
"""

from __future__ import annotations

import os
import sys
import traceback
from types import CodeType, FrameType, TracebackType


def relocate(exc: BaseException) -> BaseException:
    """Return `exc` with frames of built modules rewritten to their `.jac` lines."""
    frames: list[tuple] = []
    changed = False
    tb = exc.__traceback__
    while tb is not None:
        stand_in = _stand_in(tb, exc)
        if stand_in is not None:
            changed = True
            frames.append((stand_in.tb_frame, stand_in.tb_lasti, stand_in.tb_lineno))
        else:
            frames.append((tb.tb_frame, tb.tb_lasti, tb.tb_lineno))
        tb = tb.tb_next
    if not changed:
        return exc
    rebuilt = None
    for frame, lasti, lineno in reversed(frames):
        rebuilt = TracebackType(rebuilt, frame, lasti, lineno)
    return exc.with_traceback(rebuilt)


def jac_position(frame: FrameType) -> tuple[str, int]:
    """Where `frame` is in Jac terms: (file name as the user knows it, `.jac` line).

    A frame of a built module is mapped through its line table; a frame compiled
    in memory already has the `.jac` file and line. Used to say where a `report`
    ran (docs/protocol.md, "Errors while running").
    """
    return jac_site(frame.f_code, frame.f_lineno, frame.f_globals)


def jac_site(code: CodeType, line: int, globals_: dict) -> tuple[str, int]:
    """`jac_position` of a frame that ran `code` with `globals_`, at Python line `line`."""
    table = globals_.get("__jacc_lines__")
    if table is not None and code.co_filename == globals_.get("__file__"):
        return globals_["__jacc_source__"], table.get(line, line)
    return os.path.basename(code.co_filename), line


def _stand_in(tb: TracebackType, exc: BaseException) -> TracebackType | None:
    globals_ = tb.tb_frame.f_globals
    table = globals_.get("__jacc_lines__")
    if table is None or tb.tb_frame.f_code.co_filename != globals_.get("__file__"):
        return None
    jac_line = table.get(tb.tb_lineno)
    if jac_line is None:
        return None
    source = os.path.join(os.path.dirname(globals_["__file__"]), globals_["__jacc_source__"])
    return _raise_at(source, jac_line, tb.tb_frame.f_code.co_name, exc)


def _raise_at(filename: str, line: int, name: str, exc: BaseException) -> TracebackType:
    """A traceback entry whose frame says `File filename, line N, in name`."""
    code = compile("\n" * (line - 1) + "raise __jacc_exception__", filename, "exec")
    code = code.replace(co_name=name)
    try:
        exec(code, {"__jacc_exception__": exc})
    except BaseException:
        return sys.exc_info()[2].tb_next
    raise AssertionError("unreachable")


def jac_traceback(error: BaseException) -> str:
    """The traceback of an error raised by a Jac program, showing only `.jac` frames.

    For a program whose top level raised while loading (a failing import, a glob
    that divides by zero): the frames of the loader in between are noise to the user.
    """
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.endswith(".jac")]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines.extend(traceback.format_exception_only(error))
    return "".join(lines).rstrip()
