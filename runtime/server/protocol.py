"""Frames in and out of a walker (SPEC §6): parsing, field checks, envelopes, codes.

Everything here is transport-free: the WebSocket session and the HTTP endpoint
both turn a request body into walker fields with `decode_object` and
`WalkerBinding.check`, run it with `run_walker`, and answer with
`success_frame` or `ProtocolError.frame`. Frames are `str`: a broadcast is
encoded once and the same object is queued to every connection.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import os
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .fieldtypes import declared_type
from ..walker import Walker, spawn

if TYPE_CHECKING:
    from .threads import Lane, WalkerPool

logger = logging.getLogger("jacc.walker")

# --- error codes (the `code` of an error envelope) ---------------------------------

INVALID_PAYLOAD = "INVALID_PAYLOAD"
UNAUTHORIZED = "UNAUTHORIZED"
MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
RATE_LIMITED = "RATE_LIMITED"
CAPACITY = "CAPACITY"
EXECUTION_ERROR = "EXECUTION_ERROR"
EXECUTION_TIMEOUT = "EXECUTION_TIMEOUT"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INTERNAL_ERROR = "INTERNAL_ERROR"
# HTTP only: an unknown route or walker, or a method the route does not serve.
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
# HTTP only: a WebSocket handshake from a browser origin that is not allowed (403).
ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"

# --- WebSocket close codes ---------------------------------------------------------

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_ABNORMAL = 1006  # never sent: the connection dropped without a close frame
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012  # the walker was removed by a dev reload
CLOSE_UNAUTHORIZED = 4401  # missing, invalid or expired token
CLOSE_CAPACITY = 4403
CLOSE_TOO_SLOW = 4408  # send timeout, or the outbound queue overflowed
CLOSE_TOO_LARGE = 4413
CLOSE_BACKPLANE_DOWN = 4503

# The HTTP status an error code maps to when it answers an HTTP request.
HTTP_STATUS = {
    INVALID_PAYLOAD: 422,
    UNAUTHORIZED: 401,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    ORIGIN_NOT_ALLOWED: 403,
    MESSAGE_TOO_LARGE: 413,
    RATE_LIMITED: 429,
    CAPACITY: 503,
    EXECUTION_ERROR: 500,
    EXECUTION_TIMEOUT: 504,
    SERVICE_UNAVAILABLE: 503,
    INTERNAL_ERROR: 500,
}

# Control frames of §6, recognised only where the walker has no `type` field.
PING, PONG, REFRESH = "ping", "pong", "refresh"
CONTROL_TYPES = frozenset({PING, PONG, REFRESH})
REFRESHED_FRAME = '{"type":"refreshed","ok":true}'

# `allow_nan=False`: NaN and Infinity are not JSON, and a client's parser may reject them.
_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=lambda value: _refuse(value)
).encode


class ProtocolError(Exception):
    """A request that gets an error envelope instead of reports.

    `close_code`, when set, is the WebSocket close code that follows the frame;
    `status` is the HTTP status when the request came over HTTP; `line` is the
    `.jac` line a walker failed at, sent in dev mode only.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: list | None = None,
        reason: str | None = None,
        close_code: int | None = None,
        status: int | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.reason = reason
        self.close_code = close_code
        self.status = status if status is not None else HTTP_STATUS.get(code, 500)
        self.line = line

    def frame(self) -> str:
        return error_frame(
            self.code, self.message, details=self.details, reason=self.reason, line=self.line
        )


class _Unserialisable(Exception):
    def __init__(self, value: object) -> None:
        super().__init__(type(value).__name__)


def _refuse(value: object) -> Any:
    raise _Unserialisable(value)


# --- frames out --------------------------------------------------------------------


def encode(value: object) -> str:
    """Compact JSON text; raises ProtocolError(INTERNAL_ERROR) for what JSON cannot hold."""
    try:
        return _encode(value)
    except _Unserialisable as error:
        message = f"a report holds a value of type `{error}`, which cannot be sent as JSON"
    except ValueError as error:
        # Circular references and NaN/Infinity; the encoder's text names neither object.
        message = f"a report cannot be sent as JSON: {error}"
    except TypeError:
        message = "a report holds a dict whose keys are not strings, numbers, booleans or null"
    except RecursionError:
        message = "a report is nested too deeply to be sent as JSON"
    raise ProtocolError(INTERNAL_ERROR, message)


def success_frame(reports: list) -> str:
    """`{"ok":true,"data":{"reports":[...]}}`; the walker object itself is never sent."""
    return '{"ok":true,"data":{"reports":' + encode(reports) + "}}"


def error_frame(
    code: str,
    message: str,
    *,
    details: list | None = None,
    reason: str | None = None,
    line: int | None = None,
) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if line is not None:
        error["line"] = line
    if reason is not None:
        error["reason"] = reason
    if details is not None:
        error["details"] = details
    return _encode({"ok": False, "error": error})


def pong_frame() -> str:
    # Milliseconds since the epoch, what `Date.now()` gives a browser client.
    return '{"type":"pong","ts":' + str(int(time.time() * 1000)) + "}"


# --- frames in ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def decode_object(data: str | bytes) -> dict:
    """Parse one request (a text frame, a UTF-8 binary frame or an HTTP body) into a dict.

    Raises ProtocolError(INVALID_PAYLOAD) for anything but one JSON object; a
    body that is not JSON at all carries HTTP status 400, one that is JSON of the
    wrong shape 422.
    """
    if not isinstance(data, str):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(
                INVALID_PAYLOAD, "expected UTF-8 JSON text, got binary data", status=400
            ) from None
    try:
        value = _decode(data)
    except json.JSONDecodeError as error:
        raise ProtocolError(
            INVALID_PAYLOAD,
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
            status=400,
        ) from None
    except ValueError as error:  # NaN, Infinity
        raise ProtocolError(INVALID_PAYLOAD, f"not valid JSON: {error}", status=400) from None
    except RecursionError:
        raise ProtocolError(INVALID_PAYLOAD, "JSON nested too deeply", status=400) from None
    if type(value) is not dict:
        raise ProtocolError(
            INVALID_PAYLOAD, f"expected a JSON object, got {json_kind(value)}", status=400
        )
    return value


def json_kind(value: object) -> str:
    """The JSON name of a decoded value's kind, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- walkers -----------------------------------------------------------------------


class WalkerBinding:
    """A walker class with everything the hot path needs worked out once.

    The type checks of its fields are compiled here, not per message; a dev
    reload makes a new binding, so an open connection looks its binding up by
    name for each frame and runs the newest code.
    """

    __slots__ = ("cls", "spec", "name", "controls", "_checks", "_required", "_required_set", "_types")

    def __init__(self, cls: type[Walker]) -> None:
        spec = cls.__jacc_spec__
        self.cls = cls
        self.spec = spec
        self.name = spec.name
        # A walker with a `type` field owns that key: no control frames there.
        self.controls = "type" not in spec.field_names
        self._checks = {f.name: declared_type(f.type).check for f in spec.fields}
        self._required = tuple(f.name for f in spec.fields if f.required)
        self._required_set = frozenset(self._required)
        self._types = {f.name: f.type for f in spec.fields}

    def control_type(self, payload: dict) -> str | None:
        """`ping`, `pong` or `refresh` if the frame is a control frame, else None."""
        if self.controls:
            kind = payload.get("type")
            if kind in CONTROL_TYPES:
                return kind
        return None

    def check(self, payload: dict) -> None:
        """Raise ProtocolError(INVALID_PAYLOAD) listing every bad field of `payload`."""
        checks = self._checks
        for name, value in payload.items():
            check = checks.get(name)
            if check is None or check(value) is not None:
                raise self._invalid(payload)
        if not payload.keys() >= self._required_set:
            raise self._invalid(payload)

    def _invalid(self, payload: dict) -> ProtocolError:
        # The slow path: collect every problem, in the walker's field order first.
        details = []
        for name in self._required:
            if name not in payload:
                details.append(
                    {"field": name, "expected": self._types[name], "message": "missing required field"}
                )
        for name, value in payload.items():
            check = self._checks.get(name)
            if check is None:
                details.append({"field": name, "message": "unknown field" + self._guess(name)})
                continue
            problem = check(value)
            if problem is not None:
                details.append({"field": name, "expected": self._types[name], "message": problem})
        names = ", ".join(f"`{d['field']}`" for d in details)
        return ProtocolError(
            INVALID_PAYLOAD, f"invalid fields for {self.name}: {names}", details=details
        )

    def _guess(self, name: str) -> str:
        match = difflib.get_close_matches(name, list(self._checks), n=1)
        return f", did you mean `{match[0]}`?" if match else ""


async def run_walker(
    binding: WalkerBinding, fields: dict, dev: bool = False, threads: WalkerPool | Lane | None = None
) -> list:
    """Run one walker instance with checked `fields` and return its reports.

    A non-async walker runs in a thread of `threads` (a connection's `Lane`, or
    the app's `WalkerPool` for a request in no order with others), off the event
    loop; without `threads`, or for an async walker, on the loop.

    A walker that raises anything at all, `SystemExit`, `KeyboardInterrupt` or a
    `CancelledError` of its own included, becomes ProtocolError(EXECUTION_ERROR)
    naming the exception's type and text; the traceback goes to the server log
    only. With `dev`, the error also carries the `.jac` line it was raised at and
    the `.jac` frames that led there (`line`, `details`).

    A cancellation of the calling task (walker timeout, disconnect, shutdown) is
    not the walker's to decide: it leaves as a CancelledError whatever the walker
    did with it (let it out, caught it and returned, raised something else).
    """
    try:
        if threads is None or binding.spec.is_async:
            reports, error = await spawn(binding.cls(**fields)), None
        else:
            reports, error = await threads.run(binding.cls, fields)
    except BaseException as raised:  # a failure of any kind is the walker's own
        reports, error = None, raised
    if _cancel_requested():
        raise error if isinstance(error, asyncio.CancelledError) else asyncio.CancelledError()
    if error is not None:
        raise execution_error(binding.name, error, dev) from None
    return reports


def _cancel_requested() -> bool:
    # Only the canceller's cancel() counts here (Task.cancelling, Python 3.11): a
    # CancelledError the walker raised by itself leaves the count at zero.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def execution_error(walker: str, error: BaseException, dev: bool = False) -> ProtocolError:
    """Log `error` with its traceback and turn it into the EXECUTION_ERROR to answer with."""
    frames = jac_frames(error.__traceback__)
    where = f" at {frames[-1]['file']}:{frames[-1]['line']}" if frames else ""
    logger.error("walker %s raised %s%s", walker, type(error).__name__, where, exc_info=error)
    message = describe_exception(error)
    if dev and frames:
        return ProtocolError(EXECUTION_ERROR, message, line=frames[-1]["line"], details=frames)
    return ProtocolError(EXECUTION_ERROR, message)


def jac_frames(tb: TracebackType | None) -> list[dict]:
    """The frames of a traceback that are in `.jac` source, outermost first.

    `{"file": "app.jac", "line": 7, "function": "explode"}`; the file is named
    by its base name, as the user knows it, never by a server path.
    """
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith(".jac"):
            frames.append({"file": os.path.basename(code.co_filename), "line": tb.tb_lineno,
                           "function": code.co_name})
        tb = tb.tb_next
    return frames


def describe_exception(error: BaseException) -> str:
    """`ValueError: boom` — the type and the text, never a traceback."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name
