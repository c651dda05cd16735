"""The AsyncAPI 3.0 document of an app's WebSocket walkers and functions (docs/protocol.md,
"AsyncAPI").

    document = asyncapi_document(walkers, title="chat", version="0.1.0", host="127.0.0.1:8000")

Served at `GET /asyncapi.json` and printed by `jacc asyncapi app.jac`. It is
written from the server's side, as AsyncAPI 3 describes the application itself:
the server *receives* a walker's request frames and replies, and *sends*
what it pushes unasked (broadcasts, and the errors that come before a close).

One channel per walker, at its canonical route `/ws/walker/{Name}` (`/ws/{Name}`
is listed in `x-jacc-aliases`), and one per WebSocket function at
`/ws/function/{name}`; `x-jacc-kind` tells them apart (top-level names are
unique, so the name is the channel's key). The request's payload schema comes from the
declared-type model that checks incoming frames (`_field_schema`), so the document
accepts exactly what the server does (tests/e2e/test_asyncapi_live.py). The
codes of the error frame come from the codes table of protocol.py.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from typing import Any

from ..walker import Field, WalkerSpec
from .fieldtypes import declared_type
from .program import Target
from .protocol import (
    CLOSE_MEANINGS,
    EXECUTION_TIMEOUT,
    HTTP_ONLY_CODES,
    HTTP_STATUS,
    STREAM_ERROR,
)

__all__ = ["ASYNCAPI_VERSION", "CLOSE_MEANINGS", "ERROR_CODES", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"

# Codes an error *frame* can carry: the codes table of protocol.py, less the codes
# that only an HTTP answer (or a refused upgrade) has, and STREAM_ERROR, which only
# ends a stream (in its done frame, with EXECUTION_TIMEOUT: DONE_CODES).
ERROR_CODES: tuple[str, ...] = tuple(code for code in HTTP_STATUS
                                     if code not in HTTP_ONLY_CODES and code != STREAM_ERROR)
DONE_CODES: tuple[str, ...] = (STREAM_ERROR, EXECUTION_TIMEOUT)

_SECURITY = {"$ref": "#/components/securitySchemes/token"}


def asyncapi_document(
    walkers: Iterable[Target], *, title: str, version: str,
    host: str | None = None, secure: bool = False,
) -> dict:
    """The AsyncAPI 3.0 document of the WebSocket walkers and functions among `walkers`.

    `host` ("127.0.0.1:8000") adds a server entry; `secure` makes its protocol `wss`.
    """
    channels: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    for cls in walkers:
        spec = cls.__jacc_spec__
        if not spec.is_websocket:
            continue
        channels[spec.name] = _channel(cls, spec)
        operations.update(_operations(spec))
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": _INFO_DESCRIPTION,
        },
        "defaultContentType": "application/json",
    }
    if host:
        document["servers"] = {
            "jacc": {"host": host, "protocol": "wss" if secure else "ws",
                     "description": "jacc serve"},
        }
    document.update({
        "channels": channels,
        "operations": operations,
        "components": _components(),
        "x-jacc-close-codes": {str(code): text for code, text in sorted(CLOSE_MEANINGS.items())},
    })
    return document


_INFO_DESCRIPTION = (
    "The WebSocket walkers and functions of a jacc app. Each text frame a client sends is "
    "one JSON object whose keys are the walker's fields (a function's parameters); it runs "
    "one walker instance (calls the function once). A stream answers with chunk frames and "
    "one done frame. Frames on one connection are answered in order. Written from the "
    "server's side: `receive` operations are what a client sends (with their replies), "
    "`send` operations what the server pushes. The wire protocol: docs/protocol.md."
)


# --- channels ----------------------------------------------------------------------


def _channel(cls: Target, spec: WalkerSpec) -> dict:
    name = spec.name
    messages: dict[str, dict] = {"request": _request_message(spec)}
    messages.update({key: _ref(f"messages/{key}") for key in _answers(spec)})
    messages["error"] = _ref("messages/error")
    if _has_controls(spec):
        messages.update({key: _ref(f"messages/{key}") for key in _CONTROL_MESSAGES})
    if spec.kind == "function":
        aliases: list[str] = []
        channel: dict[str, Any] = {
            "address": f"/ws/function/{name}",
            "title": name,
            "summary": f"WebSocket function {name}" + (", a stream." if _streams(spec) else "."),
        }
    else:
        aliases = [f"/ws/{name}"]
        channel = {
            "address": f"/ws/walker/{name}",
            "title": name,
            "summary": f"WebSocket walker {name}; also served at {aliases[0]}.",
        }
    description = _doc(cls)
    if description:
        channel["description"] = description
    return {
        **channel,
        "messages": messages,
        "bindings": {"ws": _WS_BINDING},
        "x-jacc-kind": spec.kind,
        "x-jacc-aliases": aliases,
        "x-jacc-public": spec.public,
        "x-jacc-broadcast": spec.broadcast,
        "x-jacc-stream": _streams(spec),
    }


def _streams(spec: WalkerSpec) -> bool:
    # A generator function, or a walker with `@restspec(stream=True)`: its
    # answers are chunk frames and one done frame.
    return spec.stream


def _answers(spec: WalkerSpec) -> list[str]:
    """The messages of a successful run: a stream's chunks and done, a function's result,
    a walker's reports."""
    if _streams(spec):
        return ["chunk", "done"]
    return ["result"] if spec.kind == "function" else ["reply"]


def _has_controls(spec: WalkerSpec) -> bool:
    # A walker with a field named `type` owns that key: no control frames there
    # (protocol.WalkerBinding.controls, docs/protocol.md "Control frames").
    return "type" not in spec.field_names


def _doc(cls: Target) -> str:
    # `cls.__doc__`, not `inspect.getdoc`: a walker without a docstring says nothing,
    # rather than repeating its base class's. A function has no base to repeat.
    text = cls.__dict__.get("__doc__") if isinstance(cls, type) else cls.__doc__
    return inspect.cleandoc(text) if isinstance(text, str) else ""


_WS_BINDING = {
    "method": "GET",
    "query": {
        "type": "object",
        "properties": {
            "token": {"type": "string", "description": "A JWT (the `token` security scheme)."},
        },
    },
    "bindingVersion": "0.1.0",
}


# --- the request -------------------------------------------------------------------


def _request_message(spec: WalkerSpec) -> dict:
    if spec.kind == "function":
        title = f"Call {spec.name}"
        summary = "The function's parameters, as one JSON object; each frame is one call."
    else:
        title = f"Run {spec.name}"
        summary = "The walker's fields, as one JSON object; each frame runs one walker."
    return {
        "name": f"{spec.name}Request",
        "title": title,
        "summary": summary,
        "payload": request_schema(spec),
    }


def request_schema(spec: WalkerSpec) -> dict:
    """The JSON Schema of a request frame of `spec`: its fields, and the auth key `token`."""
    properties: dict[str, dict] = {"token": _TOKEN_PROPERTY}
    for field in spec.fields:
        properties[field.name] = _property(field)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        # Unknown keys are INVALID_PAYLOAD (docs/protocol.md, "Input checks").
        "additionalProperties": False,
    }
    required = [field.name for field in spec.fields if field.required]
    if required:
        schema["required"] = required
    return schema


def _field_schema(type_text: str) -> dict:
    # The one place the type model is asked for a schema: the same model that checks
    # incoming frames and writes /openapi.json (fieldtypes.py).
    return declared_type(type_text).json_schema()


def _property(field: Field) -> dict:
    schema = {**_field_schema(field.type), "x-jacc-type": field.type}
    if field.doc:  # the docstring written before the field's `has`
        schema["description"] = inspect.cleandoc(field.doc)
    default = _default(field)
    if default is not _NO_DEFAULT:
        schema["default"] = default
    return schema


_NO_DEFAULT = object()


def _default(field: Field) -> object:
    """The field's default as JSON, or _NO_DEFAULT when it has none that JSON can show."""
    if field.default_factory is None:
        return _NO_DEFAULT
    try:
        value = field.default_factory()  # a fresh value each call, as for each walker
        json.dumps(value, allow_nan=False)
    except Exception:  # noqa: BLE001 - the user's default expression; the document goes on
        return _NO_DEFAULT
    return value


# Taken out of every frame before the walker sees its fields (docs/protocol.md, "Frames").
_TOKEN_PROPERTY = {
    "description": "A JWT; needed in the first frame of a private walker when the URL has "
                   "no `?token=`. Taken out before the walker sees the fields, and ignored "
                   "after the first frame.",
}


# --- operations --------------------------------------------------------------------


def _operations(spec: WalkerSpec) -> dict:
    name = spec.name
    channel = _ref_channel(name)
    sends = [_channel_message(name, "request")]
    answers = _answers(spec)
    direct = ["error"] if spec.broadcast else [*answers, "error"]
    if _has_controls(spec):
        sends += [_channel_message(name, "ping"), _channel_message(name, "refresh")]
        direct += ["pong", "refreshed"]
    receive: dict[str, Any] = {
        "action": "receive",
        "channel": channel,
        "title": f"Call {name}" if spec.kind == "function" else f"Run {name}",
        "summary": _receive_summary(spec),
        "messages": sends,
        "reply": {"channel": channel,
                  "messages": [_channel_message(name, key) for key in direct]},
    }
    pushed = [*answers, "error"] if spec.broadcast else ["error"]
    send: dict[str, Any] = {
        "action": "send",
        "channel": channel,
        "title": f"{name} pushes",
        "summary": (f"Every success of {name}, sent to every open connection, the sender's "
                    "own included; and the errors that precede a close." if spec.broadcast
                    else "The errors the server sends unasked, before it closes: the auth "
                         "timeout, an expired token, a connection cap."),
        "messages": [_channel_message(name, key) for key in pushed],
    }
    if not spec.public:
        receive["security"] = [_SECURITY]
    extensions = {"x-jacc-public": spec.public, "x-jacc-broadcast": spec.broadcast}
    return {f"{name}.receive": {**receive, **extensions}, f"{name}.send": {**send, **extensions}}


def _receive_summary(spec: WalkerSpec) -> str:
    name = spec.name
    if spec.broadcast:
        return (f"Run {name}: its success is broadcast to every connection (the `send` "
                "operation), errors go to the sender only.")
    if _streams(spec):
        return (f"Run {name}: one chunk frame per item, then one done frame (ok, or the "
                "error that ended it); an error frame if it could not start.")
    if spec.kind == "function":
        return f"Call {name} and reply with its result, or an error."
    return f"Run {name} and reply with its reports, or an error."


def _ref(path: str) -> dict:
    return {"$ref": f"#/components/{path}"}


def _ref_channel(name: str) -> dict:
    return {"$ref": f"#/channels/{_pointer(name)}"}


def _channel_message(name: str, key: str) -> dict:
    return {"$ref": f"#/channels/{_pointer(name)}/messages/{key}"}


def _pointer(text: str) -> str:
    # JSON Pointer escaping (RFC 6901); walker names are identifiers, but keep it right.
    return text.replace("~", "~0").replace("/", "~1")


# --- components --------------------------------------------------------------------

_CONTROL_MESSAGES = ("ping", "pong", "refresh", "refreshed")


def _components() -> dict:
    return {
        "messages": {
            "reply": _message("Success", "The walker's reports: `{\"ok\":true,\"data\":"
                              "{\"reports\":[...]}}`.", _REPLY),
            "result": _message("Result", "The function's return value: `{\"ok\":true,"
                               "\"data\":{\"result\":...}}`.", _RESULT),
            "error": _message("Error", "An error frame; the connection stays open unless a "
                              "close follows (see x-jacc-close-codes).", _error_schema()),
            "chunk": _message("Chunk", "One item of a stream: a generator's item, or a "
                              "streaming walker's report.", _CHUNK),
            "done": _message("Done", "The end of a stream; `ok` is false if it failed part "
                             "way (`STREAM_ERROR`).", _DONE),
            "ping": _message("Ping", "Asks for a pong.", _control("ping")),
            "pong": _message("Pong", "`ts` is milliseconds since the epoch.", _PONG),
            "refresh": _message("Refresh", "Replaces the connection's token before it expires.",
                                _control("refresh", token=True)),
            "refreshed": _message("Refreshed", "The new token is in force.", _REFRESHED),
        },
        "securitySchemes": {
            "token": {
                "type": "httpApiKey",
                "name": "token",
                "in": "query",
                "description": (
                    "A JWT (HS256) for walkers that are not public: `?token=T` on the URL, or "
                    "`token` in the first frame (the frame's other keys run as the first "
                    "request). A bad or missing token gets an UNAUTHORIZED frame and close "
                    "4401. Get one from `POST /user/login` or `jacc token --user NAME`; "
                    "renew it with a `refresh` frame."
                ),
            },
        },
    }


def _message(title: str, summary: str, payload: dict) -> dict:
    return {"name": title, "title": title, "summary": summary, "payload": payload}


def _error_schema() -> dict:
    return {
        "type": "object",
        "required": ["ok", "error"],
        "properties": {
            "ok": {"const": False},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": list(ERROR_CODES)},
                    "message": {"type": "string"},
                    "reason": {"type": "string",
                               "description": "the config key or auth failure behind it"},
                    "line": {"type": "integer", "description": "dev mode: the .jac line"},
                    "details": {"type": "array", "items": {"type": "object"},
                                "description": "INVALID_PAYLOAD: one entry per field "
                                               "(`field`, `expected`, `message`)"},
                },
            },
        },
    }


_REPLY = {
    "type": "object",
    "required": ["ok", "data"],
    "properties": {
        "ok": {"const": True},
        "data": {
            "type": "object",
            "required": ["reports"],
            "properties": {"reports": {"type": "array"}},
        },
    },
}

_RESULT = {
    "type": "object",
    "required": ["ok", "data"],
    "properties": {
        "ok": {"const": True},
        "data": {"type": "object", "required": ["result"], "properties": {"result": {}}},
    },
}

_CHUNK = {
    "type": "object",
    "required": ["ok", "type", "data"],
    "properties": {"ok": {"const": True}, "type": {"const": "chunk"}, "data": {}},
}

_DONE = {
    "type": "object",
    "required": ["ok", "type"],
    "properties": {
        "ok": {"type": "boolean"},
        "type": {"const": "done"},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": list(DONE_CODES)},
                "message": {"type": "string"},
                "line": {"type": "integer", "description": "dev mode: the .jac line"},
            },
        },
    },
}

_PONG = {
    "type": "object",
    "required": ["type", "ts"],
    "properties": {"type": {"const": "pong"}, "ts": {"type": "integer"}},
}

_REFRESHED = {
    "type": "object",
    "required": ["type", "ok"],
    "properties": {"type": {"const": "refreshed"}, "ok": {"const": True}},
}


def _control(kind: str, token: bool = False) -> dict:
    properties: dict[str, dict] = {"type": {"const": kind}}
    required = ["type"]
    if token:
        properties["token"] = {"type": "string"}
        required.append("token")
    return {"type": "object", "required": required, "properties": properties}
