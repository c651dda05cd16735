"""Jac's multi-statement lambdas, made where they stand.

Python's `lambda` holds one expression; a Jac lambda may hold statements. Codegen
writes such a lambda's body as a `def` just before the statement that holds the
lambda (a template), and the lambda expression itself as `make_lambda(template,
defaults)`: a new function each time it is evaluated, with its defaults evaluated
there, as Python makes a lambda's. The new function shares the template's code and
closure cells, so it sees and rebinds the same variables the lambda would.
"""

from __future__ import annotations

import types
from typing import Any, Callable


def make_lambda(template: Callable, defaults: tuple = (),
                kwdefaults: dict[str, Any] | None = None) -> Callable:
    """A function made from `template`'s code, with the given default values.

    Costs one function object: about what evaluating a Python `lambda` costs.
    """
    made = types.FunctionType(template.__code__, template.__globals__, "<lambda>",
                              defaults or None, template.__closure__)
    made.__kwdefaults__ = kwdefaults
    made.__qualname__ = template.__qualname__.rpartition(".")[0] + ".<lambda>" \
        if "." in template.__qualname__ else "<lambda>"
    made.__annotations__ = dict(template.__annotations__)
    made.__module__ = template.__module__
    return made
