"""Real Redis and PostgreSQL for the tests (the fixtures are in conftest.py).

A test that needs a service it cannot reach is skipped, with the reason,
except with `CI=true`, where it fails: CI must not pass without running it.
Tests share the machine's Redis and PostgreSQL but never each other's data:
each gets a key namespace or a database of its own, removed afterwards. Tests
that kill Redis start their own `redis-server` (`RedisServer`), never touching
the shared one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("JACC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("JACC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def unavailable(what: str) -> None:
    """Skip (fail under CI=true) a test that needs `what`, which is not there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: a test that needs it cannot run in CI", pytrace=False)
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(url: str) -> str | None:
    """None if Redis at `url` answers PING, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
        return None
    except (redis.RedisError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    finally:
        client.close()


def drop_namespace(url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class RedisServer:
    """A `redis-server` of the test's own on a free port, empty at every start (no
    persistence), which the test may kill and start again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while redis_answers(self.url) is not None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()


def postgres_admin():
    """A psycopg connection to the shared PostgreSQL that may create databases, or None."""
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=2)
    except psycopg.Error:
        return None


@contextlib.contextmanager
def postgres_database():
    """A database of its own on the shared PostgreSQL; yields its URL, drops it afterwards."""
    admin = postgres_admin()
    if admin is None:
        unavailable(f"PostgreSQL at {POSTGRES_URL} is not answering")
    name = f"jacc_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base, _, _ = POSTGRES_URL.rpartition("/")
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
