"""The server's log (docs/operations.md#logs): its format, its level, and what every line carries.

    logging.config.dictConfig(log_config("json", "info"))

Text, uvicorn's format, is the default; `[server] log_format = "json"` writes
one JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `event`
(the message), and where they apply `conn` and `walker` (the connection the
line is about), `close_code`, the access line's `client`, `method`, `path` and
`status`, `exc` (a traceback), and the start banner's `walkers`.

Each WebSocket connection gets a short random id when it opens
(`connection_opened`); every line logged while serving it, by jacc or by
uvicorn, carries it (`[3fa2c1d0]` in text). The id lives in a context
variable: the session's tasks and the timers they start inherit it, and the
hot path pays nothing for it.

Tokens never reach a line (`RedactTokens`, on every handler), nor do message
bodies: no line of the server quotes a frame.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from datetime import datetime, timezone
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import TRACE_LOG_LEVEL

from .auth import redact_tokens

__all__ = ["JsonFormatter", "RedactTokens", "connection_closed", "connection_opened",
           "log_config", "uvicorn_level"]

logger = logging.getLogger("jacc.connections")

# (connection id, walker) of the connection being served, in its tasks and timers.
_CONNECTION: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "jacc_connection", default=None)

_LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG, "trace": TRACE_LOG_LEVEL}
# Record attributes that a JSON line carries when a record has them (`walkers`: the banner's).
_FIELDS = ("conn", "walker", "close_code", "walkers")


def connection_opened(walker: str) -> str:
    """Give the connection being served here a short id, carried by every line about it."""
    conn = os.urandom(4).hex()
    _CONNECTION.set((conn, walker))
    return conn


def connection_closed(walker: str, code: int | None, by_server: bool, seconds: float) -> None:
    """The one line that says a connection is over: how, by whom, after how long."""
    shown = "without a close code" if code is None else f"with {code}"
    who = "the server" if by_server else "the client"
    logger.info("%s connection closed %s by %s after %.1f s", walker, shown, who, seconds,
                extra={"close_code": code})


def log_config(log_format: str = "text", level: str = "info") -> dict:
    """uvicorn's logging, plus the `jacc` loggers, in `log_format` ("text" or "json").

    Every handler redacts tokens and adds the connection's id to the lines about it.
    """
    if log_format == "json":
        formatters: dict[str, Any] = {"default": {"()": JsonFormatter},
                                      "access": {"()": JsonFormatter}}
    else:
        formatters = {
            **LOGGING_CONFIG["formatters"],
            "default": {**LOGGING_CONFIG["formatters"]["default"],
                        "fmt": "%(levelprefix)s %(conn_prefix)s%(message)s"},
        }
    return {
        **LOGGING_CONFIG,
        "formatters": formatters,
        "filters": {"connection": {"()": ConnectionContext},
                    "redact_tokens": {"()": RedactTokens}},
        "handlers": {
            name: {**handler, "filters": ["connection", "redact_tokens"]}
            for name, handler in LOGGING_CONFIG["handlers"].items()
        },
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "jacc": {"handlers": ["default"], "level": _LEVELS[level], "propagate": False},
            # websockets' own line per socket opened, closed or refused repeats uvicorn's.
            "jacc.sockets.websockets": {"level": "WARNING"},
        },
    }


def uvicorn_level(level: str) -> int:
    """`[server] log_level` as uvicorn's `log_level` takes it."""
    return _LEVELS[level]


class RedactTokens(logging.Filter):
    """Replaces `token=...` in every log record: tokens must never reach a log
    (docs/protocol.md, "Authentication")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if record.args:
            # uvicorn's access formatter unpacks the arguments: keep their shape.
            if isinstance(record.args, tuple):
                record.args = tuple(_redacted(arg) for arg in record.args)
            elif isinstance(record.args, dict):
                record.args = {key: _redacted(value) for key, value in record.args.items()}
        return True


def _redacted(value: object) -> object:
    return redact_tokens(value) if isinstance(value, str) else value


class ConnectionContext(logging.Filter):
    """Adds `conn` and `walker` of the connection being served, and the text prefix."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _CONNECTION.get()
        if current is not None and not hasattr(record, "conn"):
            record.conn, record.walker = current
        conn = getattr(record, "conn", None)
        record.conn_prefix = f"[{conn}] " if conn else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; uvicorn's access lines are taken apart into fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) \
                and len(record.args) == 5:
            client, method, path, _version, status = record.args
            line.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _utc(created: float) -> str:
    moment = datetime.fromtimestamp(created, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
