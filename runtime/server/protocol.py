"""Frames in and out of a walker (docs/protocol.md, "Frames"): parsing, field checks, envelopes, codes.

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
import math
import os
import re
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .fieldtypes import declared_type
from .jsontext import decoder, encoder
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
# A stream that failed part way: the `error` of its `done` frame (docs/protocol.md, "Streams").
STREAM_ERROR = "STREAM_ERROR"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INTERNAL_ERROR = "INTERNAL_ERROR"
# HTTP only: an unknown route or walker, or a method the route does not serve.
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
# HTTP only: a WebSocket handshake from a browser origin that is not allowed (403).
ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
# HTTP only: a request not complete within handshake_timeout_seconds (408).
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"

# --- WebSocket close codes ---------------------------------------------------------

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_ABNORMAL = 1006  # never sent: the connection dropped without a close frame
CLOSE_INVALID_DATA = 1007  # a text frame that is not UTF-8
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012  # the walker was removed by a dev reload
CLOSE_UNAUTHORIZED = 4401  # missing, invalid or expired token
CLOSE_CAPACITY = 4403
CLOSE_TOO_SLOW = 4408  # send timeout, or the outbound queue overflowed
CLOSE_TOO_LARGE = 4413
CLOSE_BACKPLANE_DOWN = 4503
# uvicorn's own close for a frame refused from its header (docs/protocol.md, "Close codes").
CLOSE_FRAME_TOO_BIG = 1009

# What each close code means, for people: the console shows it, /asyncapi.json lists
# it (x-jacc-close-codes). tests/test_asyncapi.py checks every CLOSE_* has its line.
CLOSE_MEANINGS: dict[int, str] = {
    CLOSE_NORMAL: "closed normally",
    CLOSE_GOING_AWAY: "the server is shutting down",
    CLOSE_ABNORMAL: "the connection dropped without a close frame (server gone or network down)",
    CLOSE_INVALID_DATA: "a text frame that is not UTF-8",
    CLOSE_FRAME_TOO_BIG: "a frame far over max_message_bytes, refused from its header",
    CLOSE_INTERNAL_ERROR: "an internal error in the server, or no answer to its pings",
    CLOSE_SERVICE_RESTART: "the walker was removed or changed by a dev reload: reconnect",
    CLOSE_UNAUTHORIZED: "unauthorized: the token is missing, invalid or expired",
    CLOSE_CAPACITY: "a connection cap was reached (per walker, per user or per address)",
    CLOSE_TOO_SLOW: "this client read too slowly (outbound queue full or a send timed out)",
    CLOSE_TOO_LARGE: "a frame over max_message_bytes",
    CLOSE_BACKPLANE_DOWN: "the broadcast backplane is unavailable",
}

# The HTTP status an error code maps to when it answers an HTTP request.
HTTP_STATUS = {
    INVALID_PAYLOAD: 422,
    UNAUTHORIZED: 401,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    ORIGIN_NOT_ALLOWED: 403,
    REQUEST_TIMEOUT: 408,
    MESSAGE_TOO_LARGE: 413,
    RATE_LIMITED: 429,
    CAPACITY: 503,
    EXECUTION_ERROR: 500,
    EXECUTION_TIMEOUT: 504,
    STREAM_ERROR: 500,  # never over HTTP: streams are WebSocket only
    SERVICE_UNAVAILABLE: 503,
    INTERNAL_ERROR: 500,
}

# Codes that only an HTTP answer (or a refused upgrade) carries, never an error frame.
HTTP_ONLY_CODES = frozenset({NOT_FOUND, METHOD_NOT_ALLOWED, ORIGIN_NOT_ALLOWED, REQUEST_TIMEOUT})

# Control frames of §6, recognised only where the walker has no `type` field.
PING, PONG, REFRESH = "ping", "pong", "refresh"
CONTROL_TYPES = frozenset({PING, PONG, REFRESH})
REFRESHED_FRAME = '{"type":"refreshed","ok":true}'

# `allow_nan=False`: NaN and Infinity are not JSON, and a client's parser may reject them.
_encode = encoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=lambda value: _refuse(value)
)


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


def encode(value: object, what: str = "a report") -> str:
    """Compact JSON text; raises ProtocolError(INTERNAL_ERROR) for what JSON cannot hold.

    The text is also checked to be Unicode that UTF-8 can carry: a lone surrogate
    in a str would otherwise fail only when the socket layer encodes the frame,
    dropping the connection (or, for a broadcast, every member's) with no word.
    `what` names the value in the message: "a report", "the result", "a chunk".
    """
    try:
        text = _encode(value)
        if not text.isascii():
            text.encode("utf-8")  # C speed; only non-ASCII frames pay it
        return text
    except UnicodeEncodeError:
        message = f"{what} holds text that is not valid Unicode (a lone surrogate)"
    except _Unserialisable as error:
        message = f"{what} holds a value of type `{error}`, which cannot be sent as JSON"
    except ValueError as error:
        # Circular references and NaN/Infinity; the encoder's text names neither object.
        message = f"{what} cannot be sent as JSON: {error}"
    except TypeError:
        message = f"{what} holds a dict whose keys are not strings, numbers, booleans or null"
    except RecursionError:
        message = f"{what} is nested too deeply to be sent as JSON"
    raise ProtocolError(INTERNAL_ERROR, message)


def success_frame(reports: list, walker: str = "", dev: bool = False) -> str:
    """`{"ok":true,"data":{"reports":[...]}}`; the walker object itself is never sent.

    A report JSON cannot carry (NaN or infinity, a lone surrogate, an object of
    no JSON kind) is the walker's own failure: EXECUTION_ERROR naming the `.jac`
    line of its `report` in the log, and in the frame with `dev`.
    """
    try:
        return '{"ok":true,"data":{"reports":' + encode(reports) + "}}"
    except ProtocolError as error:
        raise _unsendable_report(walker, reports, error.message, dev) from None


def _unsendable_report(walker: str, reports: list, message: str, dev: bool) -> ProtocolError:
    sites = getattr(reports, "sites", ())
    site = next((sites[i] for i, item in enumerate(reports)
                 if i < len(sites) and not _sendable(item)), None)
    where = f" at {site[0]}:{site[1]}" if site else ""
    logger.error("walker %s: %s%s", walker, message, where)
    if dev and site:
        frame = {"file": site[0], "line": site[1], "function": walker}
        return ProtocolError(EXECUTION_ERROR, message, line=site[1], details=[frame])
    return ProtocolError(EXECUTION_ERROR, message)


def _sendable(item: object) -> bool:
    try:
        encode(item)
    except ProtocolError:
        return False
    return True


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


class _NotFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    # `1e400` is valid JSON but no float: Python reads it as infinity, which no
    # walker expects and no reply can carry.
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 24 else f"{text[:21]}..."
        raise _NotFinite(f"the number {shown} is out of range for a float")
    return value


_decode = decoder(parse_constant=_reject_constant, parse_float=_finite_float)
# A `\uD800`-`\uDFFF` escape: the only way a lone surrogate can get into decoded
# text (raw ones are not UTF-8). Most frames have none, and skip the walk below.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def decode_object(data: str | bytes, max_keys: int | None = None) -> dict:
    """Parse one request (a text frame, a UTF-8 binary frame or an HTTP body) into a dict.

    Raises ProtocolError(INVALID_PAYLOAD) for anything but one JSON object; a
    body that is not JSON at all carries HTTP status 400, one that is JSON of the
    wrong shape 422. `max_keys`, when given, is the most keys a valid request can
    have (`WalkerBinding.max_keys`): a large request with more is refused before
    it is parsed.
    """
    if not isinstance(data, str):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(
                INVALID_PAYLOAD, "expected UTF-8 JSON text, got binary data", status=400
            ) from None
    if max_keys is not None and len(data) > _SCREEN_FROM:
        _screen_keys(data, max_keys)
    try:
        value = _decode(data)
    except json.JSONDecodeError as error:
        raise ProtocolError(
            INVALID_PAYLOAD,
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
            status=400,
        ) from None
    except _NotFinite as error:
        raise ProtocolError(INVALID_PAYLOAD, str(error), status=422) from None
    except ValueError as error:  # NaN, Infinity, an integer of over 4300 digits
        raise ProtocolError(INVALID_PAYLOAD, f"not valid JSON: {error}", status=400) from None
    except RecursionError:
        raise ProtocolError(INVALID_PAYLOAD, "JSON nested too deeply", status=400) from None
    if type(value) is not dict:
        raise ProtocolError(
            INVALID_PAYLOAD, f"expected a JSON object, got {json_kind(value)}", status=400
        )
    surrogate = "\\u" in data and _SURROGATE_ESCAPE.search(data) and _lone_surrogate(value)
    if surrogate:
        raise ProtocolError(
            INVALID_PAYLOAD,
            f"text holds a lone surrogate ({surrogate}, an escape without its pair), "
            "which is not Unicode",
            status=400,
        )
    return value


# Parsing thousands of short keys costs some 20 times a string of the same size
# (docs/security.md, "Frames"): frames past this size are screened first.
_SCREEN_FROM = 4096


def _screen_keys(data: str, max_keys: int) -> None:
    # A key ends with `":`; inside a string that pair is written `\":`. So the
    # difference counts the keys at least (a key ending in an escaped backslash,
    # or written `" :`, is not counted): when even that is too many, no parse is
    # needed to know the frame is wrong. Two passes at C speed.
    keys = data.count('":') - data.count('\\":')
    if keys > max_keys:
        raise ProtocolError(
            INVALID_PAYLOAD,
            f"a request here has at most {max_keys} keys; this one has {keys} or more",
            status=422,
        )


def _lone_surrogate(value: object) -> str | None:
    """The first lone surrogate of any string in `value`, key or element, as `U+D800`."""
    stack = [value]
    while stack:  # a loop, not recursion: the nesting is the client's to choose
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as error:
                return f"U+{ord(item[error.start]):04X}"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


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

    __slots__ = ("cls", "spec", "name", "kind", "controls", "max_keys", "_checks",
                 "_exact", "_normalisers", "_required", "_required_set", "_types")

    # A served function is bound the same way (functions.FunctionBinding): its spec has
    # `fields` too, made from its parameters.

    def __init__(self, cls: type[Walker]) -> None:
        spec = cls.__jacc_spec__
        self.cls = cls
        self.spec = spec
        self.name = spec.name
        self.kind = spec.kind  # `walker` or `function`: which routes serve it
        # A walker with a `type` field owns that key: no control frames there.
        self.controls = "type" not in spec.field_names
        self._checks = {f.name: declared_type(f.type).check for f in spec.fields}
        self._exact = {f.name: exact for f in spec.fields
                       if (exact := declared_type(f.type).exact) is not None}
        # Only fields with an `int` inside have anything to convert (1.0 → 1): most
        # walkers have none, and pay nothing for them.
        self._normalisers = tuple(
            (f.name, normalise) for f in spec.fields
            if (normalise := declared_type(f.type).normalise) is not None
        )
        self._required = tuple(f.name for f in spec.fields if f.required)
        # Fields that all take scalars bound the keys of a valid frame: its fields and
        # `token`. A field that takes an object or an array (or anything) does not.
        flat = all(_scalar(declared_type(f.type).json_schema()) for f in spec.fields)
        self.max_keys = len(spec.fields) + 1 if flat else None
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
        checks, exact = self._checks, self._exact
        for name, value in payload.items():
            if type(value) is exact.get(name):
                continue  # e.g. a str for a `str` field: no call
            check = checks.get(name)
            if check is None or check(value) is not None:
                raise self._invalid(payload)
        if not payload.keys() >= self._required_set:
            raise self._invalid(payload)
        for name, normalise in self._normalisers:
            if name in payload:
                payload[name] = normalise(payload[name])

    def _invalid(self, payload: dict) -> ProtocolError:
        # The slow path: the problems, in the walker's field order first. The answer
        # is bounded (docs/security.md): the first MAX_DETAILS problems, a guess for
        # the first MAX_GUESSES unknown fields, and a count of the rest, so that a
        # frame of thousands of bad keys costs little more than a valid one.
        details: list[dict] = []
        problems = unknown = 0
        for name in self._required:
            if name not in payload:
                problems += 1
                if problems <= MAX_DETAILS:
                    details.append({"field": name, "expected": self._types[name],
                                    "message": "missing required field"})
        for name, value in payload.items():
            check = self._checks.get(name)
            if check is None:
                problems += 1
                unknown += 1
                if problems <= MAX_DETAILS:
                    guess = self._guess(name) if unknown <= MAX_GUESSES else ""
                    details.append({"field": _shown(name), "message": "unknown field" + guess})
                continue
            problem = check(value)
            if problem is not None:
                problems += 1
                if problems <= MAX_DETAILS:
                    details.append({"field": name, "expected": self._types[name],
                                    "message": problem})
        names = ", ".join(f"`{d['field']}`" for d in details)
        more = problems - len(details)
        if more:
            names += f" and {more} more"
        return ProtocolError(
            INVALID_PAYLOAD, f"invalid fields for {self.name}: {names}", details=details
        )

    def _guess(self, name: str) -> str:
        if len(name) > _GUESS_LENGTH:
            return ""  # difflib is quadratic in the length: no guess for a huge name
        match = difflib.get_close_matches(name, list(self._checks), n=1)
        return f", did you mean `{match[0]}`?" if match else ""


def _scalar(schema: dict) -> bool:
    """Does `schema` admit only strings, numbers, booleans and null?"""
    if "anyOf" in schema:
        return all(_scalar(member) for member in schema["anyOf"])
    return schema.get("type") in ("string", "integer", "number", "boolean", "null")


# How much of a bad frame an INVALID_PAYLOAD describes (docs/security.md).
MAX_DETAILS = 10
MAX_GUESSES = 3
_GUESS_LENGTH = 100
_SHOWN_LENGTH = 64


def _shown(name: str) -> str:
    """A client's key as the answer repeats it: cut short, so the answer stays small."""
    return name if len(name) <= _SHOWN_LENGTH else f"{name[:_SHOWN_LENGTH]}..."


async def run_walker(
    binding: WalkerBinding, fields: dict, dev: bool = False, threads: WalkerPool | Lane | None = None,
    task: asyncio.Task | None = None,
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
    `task` is the calling task, when the caller has it at hand (see `cancel_requested`).
    """
    try:
        if threads is None or binding.spec.is_async:
            reports, error = await spawn(binding.cls(**fields)), None
        else:
            reports, error = await threads.run(binding.cls, fields)
    except BaseException as raised:  # a failure of any kind is the walker's own
        reports, error = None, raised
    if cancel_requested(task):
        raise error if isinstance(error, asyncio.CancelledError) else asyncio.CancelledError()
    if error is not None:
        raise execution_error(binding.name, error, dev) from None
    return reports


def cancel_requested(task: asyncio.Task | None = None) -> bool:
    """Has the canceller asked `task` (by default the current task) to stop?"""
    # Only the canceller's cancel() counts here (Task.cancelling, Python 3.11): a
    # CancelledError the walker raised by itself leaves the count at zero. A caller
    # that knows its task passes it: `asyncio.current_task()` asks the OS for the
    # process id on every call in Python 3.11 (docs/performance.md).
    if task is None:
        task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def execution_error(walker: str, error: BaseException, dev: bool = False, *,
                    kind: str = "walker", code: str = EXECUTION_ERROR) -> ProtocolError:
    """Log `error` with its traceback and turn it into the EXECUTION_ERROR to answer with.

    `kind` names what raised in the log (`walker`, `function`); `code` is STREAM_ERROR
    for a stream that failed part way."""
    frames = jac_frames(error.__traceback__)
    where = f" at {frames[-1]['file']}:{frames[-1]['line']}" if frames else ""
    logger.error("%s %s raised %s%s", kind, walker, type(error).__name__, where, exc_info=error)
    message = describe_exception(error)
    if dev and frames:
        return ProtocolError(code, message, line=frames[-1]["line"], details=frames)
    return ProtocolError(code, message)


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
