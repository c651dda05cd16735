"""`jacc.compiler`, the one place the stages meet: what it does around them."""

from __future__ import annotations

import gc

import pytest

from jacc.compiler import compile_source
from jacc.diagnostics import JacError

APP = "\nwalker : pub W {\n    can go with entry {\n        report 1;\n    }\n}\n"


def test_the_collector_runs_again_after_a_compile() -> None:
    assert gc.isenabled()
    compile_source(APP)
    assert gc.isenabled()


def test_the_collector_runs_again_after_a_failed_compile() -> None:
    with pytest.raises(JacError):
        compile_source("\nwalker W {")
    assert gc.isenabled()


def test_a_paused_collector_stays_paused() -> None:
    # A caller that paused it (a benchmark, an outer compile) keeps it paused.
    gc.disable()
    try:
        compile_source(APP)
        assert not gc.isenabled()
    finally:
        gc.enable()
