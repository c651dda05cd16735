"""Served functions on the server side: binding, calling, the result frame (docs/protocol.md,
"Functions and streams").

Transport-free, like protocol.py: the WebSocket session (ws/streams.py) and the HTTP
endpoint (app.py) both check a request's fields with the binding, `call` the
function, and answer with `result_frame`, or stream what it returned.

    binding = bind(ws_echo)                  # a FunctionBinding; bind(ChatRoom) a WalkerBinding
    binding.check(fields)                    # INVALID_PAYLOAD, as for a walker's `has` fields
    value = await binding.call(fields, dev)  # EXECUTION_ERROR if it raised
    frame = result_frame(value, binding.name, dev)   # {"ok":true,"data":{"result":...}}

Where each kind runs: an `async def` on the event loop; a plain `def` in a worker
thread (`asyncio.to_thread`), so that one that blocks does not hold every other
client up. A generator function's body runs only as its stream is read (ws/streams.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..walker import Walker
from .protocol import (
    EXECUTION_ERROR,
    ProtocolError,
    WalkerBinding,
    cancel_requested,
    encode,
    execution_error,
)

__all__ = ["FunctionBinding", "bind", "is_stream", "result_frame"]

logger = logging.getLogger("jacc.walker")  # where a walker's failures are logged too


class FunctionBinding(WalkerBinding):
    """A served function with its field checks worked out once (the parameters are the fields).

    `function` is the callable; the checks, `controls` and `name` are a walker binding's.
    """

    __slots__ = ()

    @property
    def function(self) -> Callable:
        return self.cls

    async def call(self, fields: dict, dev: bool = False) -> Any:
        """Call the function with checked `fields`: its result, or the generator it made.

        Raises ProtocolError(EXECUTION_ERROR) for whatever the function raises,
        `SystemExit` or a `CancelledError` of its own included, as `run_walker` does;
        a cancellation of the caller (timeout, disconnect, shutdown) leaves as one.
        """
        function = self.cls
        try:
            if inspect.isasyncgenfunction(function) or inspect.isgeneratorfunction(function):
                return function(**fields)  # no body runs until the stream is read
            if inspect.iscoroutinefunction(function):
                return await function(**fields)
            # A plain `def` may block (file or network I/O, a long loop): off the loop.
            result = await asyncio.to_thread(function, **fields)
            if inspect.isawaitable(result):  # a sync wrapper around a coroutine
                result = await result
            return result
        except BaseException as error:  # a failure of any kind is the function's own
            if cancel_requested():
                raise
            raise execution_error(self.name, error, dev, kind="function") from None


def bind(target: type[Walker] | Callable) -> WalkerBinding:
    """The binding of a walker class or a served function, by what its spec says it is."""
    if target.__jacc_spec__.kind == "function":
        return FunctionBinding(target)
    return WalkerBinding(target)


def is_stream(value: object) -> bool:
    """Whether a function's result is a stream: a generator or an async generator."""
    return inspect.isgenerator(value) or inspect.isasyncgen(value)


def result_frame(value: object, function: str = "") -> str:
    """`{"ok":true,"data":{"result":VALUE}}` (docs/protocol.md, "Functions and streams").

    A result JSON cannot carry is the function's own failure: EXECUTION_ERROR,
    naming the Python type, never a repr.
    """
    try:
        return '{"ok":true,"data":{"result":' + encode(value, "the result") + "}}"
    except ProtocolError as error:
        logger.error("function %s: %s", function, error.message)
        raise ProtocolError(EXECUTION_ERROR, error.message) from None
