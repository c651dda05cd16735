"""The server's log (runtime/server/logs.py): JSON lines, connection ids, no tokens.
tests/e2e/test_operations_logs.py reads the log of a real `jacc serve`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys

from jacc_runtime.server.logs import (
    ConnectionContext,
    JsonFormatter,
    RedactTokens,
    connection_closed,
    connection_opened,
    log_config,
)


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    """A logger of its own, through the filters every handler of `log_config` has."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ConnectionContext())
    handler.addFilter(RedactTokens())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"jacc.test.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_and_event():
    logger, out = capture(JsonFormatter())
    logger.warning("walker %s ran past walker_timeout_seconds", "Spin")
    [line] = lines(out)
    assert line["level"] == "warning" and line["logger"] == logger.name
    assert line["event"] == "walker Spin ran past walker_timeout_seconds"
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert "conn" not in line and "walker" not in line


def test_every_line_about_a_connection_carries_its_id_and_walker():
    logger, out = capture(JsonFormatter())

    async def session():
        conn = connection_opened("ChatRoom")
        logger.info("in the session")
        # The session's own tasks and timers inherit the id.
        await asyncio.get_running_loop().create_task(_log_later(logger))
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, lambda: (logger.info("a timer"), done.set()))
        await done.wait()
        return conn

    async def server():
        conn = await asyncio.create_task(session())
        logger.info("outside any connection")  # the session's context stayed in its task
        return conn

    conn = asyncio.run(server())
    first, task, timer, outside = lines(out)
    assert len(conn) == 8
    for line in (first, task, timer):
        assert (line["conn"], line["walker"]) == (conn, "ChatRoom")
    assert "conn" not in outside


async def _log_later(logger: logging.Logger) -> None:
    logger.info("in a task of the session")


def test_two_connections_have_different_ids():
    async def one() -> str:
        return connection_opened("Echo")

    async def both():
        return await asyncio.gather(one(), one())

    first, second = asyncio.run(both())
    assert first != second


def test_the_close_line_carries_the_close_code():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ConnectionContext())
    handler.setFormatter(JsonFormatter())
    connections = logging.getLogger("jacc.connections")
    level = connections.level
    connections.addHandler(handler)
    connections.setLevel(logging.INFO)
    try:
        connection_closed("ChatRoom", 4408, True, 12.34)
    finally:
        connections.removeHandler(handler)
        connections.setLevel(level)
    [line] = lines(out)
    assert line["close_code"] == 4408
    assert line["event"] == "ChatRoom connection closed with 4408 by the server after 12.3 s"


def test_tokens_never_reach_a_line():
    logger, out = capture(JsonFormatter())
    logger.info('%s - "%s %s HTTP/%s" %d', "203.0.113.9:5000", "GET",
                "/ws/Chat?token=eyJhbGciOi.secret.part", "1.1", 101)
    assert "eyJhbGciOi" not in out.getvalue()


def test_an_access_line_is_taken_apart():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactTokens())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("uvicorn.access")
    saved = access.handlers[:], access.propagate, access.level
    access.handlers[:] = [handler]
    access.propagate = False
    access.setLevel(logging.INFO)
    try:
        access.info('%s - "%s %s HTTP/%s" %d', "203.0.113.9:5000", "GET",
                    "/healthz?token=abc.def.ghi", "1.1", 200)
    finally:
        access.handlers[:], access.propagate, access.level = saved
    [line] = lines(out)
    assert (line["client"], line["method"], line["status"]) == ("203.0.113.9:5000", "GET", 200)
    assert line["path"].startswith("/healthz?token=") and "abc.def.ghi" not in line["path"]


def test_an_exception_is_one_line_with_its_traceback():
    logger, out = capture(JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("walker Boom raised ValueError")
    [line] = lines(out)
    assert "Traceback" in line["exc"] and "ValueError: boom" in line["exc"]


def test_text_lines_prefix_the_connection_id():
    formatter = logging.Formatter("%(conn_prefix)s%(message)s")
    logger, out = capture(formatter)

    async def session():
        conn = connection_opened("Echo")
        logger.info("hello")
        return conn

    conn = asyncio.run(session())
    logger.info("no connection")
    assert out.getvalue().splitlines() == [f"[{conn}] hello", "no connection"]


def test_log_config_sets_the_format_and_the_level():
    text = log_config("text", "warning")
    assert text["loggers"]["jacc"]["level"] == logging.WARNING
    assert "conn_prefix" in text["formatters"]["default"]["fmt"]
    json_config = log_config("json", "trace")
    assert json_config["formatters"]["default"]["()"] is JsonFormatter
    assert json_config["loggers"]["jacc"]["level"] == 5
    for handler in json_config["handlers"].values():
        assert handler["filters"] == ["connection", "redact_tokens"]


_CONFIGURED = """
import logging, logging.config
from jacc_runtime.server.logs import log_config
logging.config.dictConfig(log_config("json", "info"))
logging.getLogger("jacc.app").info("one line")
logging.getLogger("uvicorn.error").info("and uvicorn's")
logging.getLogger("jacc.app").debug("not at info")
"""


def test_the_whole_config_writes_json_lines():
    result = subprocess.run([sys.executable, "-c", _CONFIGURED], capture_output=True,
                            text=True, timeout=60, check=True)
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert events == ["one line", "and uvicorn's"]
