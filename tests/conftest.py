"""Fixtures shared by the tests (the end-to-end ones also have tests/e2e/conftest.py).

Tests that need a real Redis or PostgreSQL take them from here (services.py has
the machinery): without the service such a test is skipped with the reason;
with `CI=true` it fails.
"""

from __future__ import annotations

import importlib.util
import os
import types
import uuid
from pathlib import Path
from typing import Callable

import pytest
from services import (
    REDIS_SERVER,
    REDIS_URL,
    RedisServer,
    drop_namespace,
    postgres_database,
    redis_answers,
    unavailable,
)


def _import_path(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def import_built() -> Callable[[Path, str], types.ModuleType]:
    """`import_built(path, name)`: import a module written by `jacc build`, as a user would."""
    return _import_path


@pytest.fixture
def redis_url() -> str:
    """The shared Redis, when it answers."""
    why = redis_answers(REDIS_URL)
    if why is not None:
        unavailable(f"Redis at {REDIS_URL} is not answering ({why})")
    return REDIS_URL


@pytest.fixture
def redis_namespace(redis_url: str):
    """A key prefix of the test's own on the shared Redis; its keys are deleted afterwards."""
    namespace = f"jacc-test:{uuid.uuid4().hex[:12]}"
    yield namespace
    drop_namespace(redis_url, namespace)


@pytest.fixture
def redis_server(tmp_path_factory):
    """Start a `redis-server` of the test's own (`RedisServer`), killed afterwards."""
    if not os.access(REDIS_SERVER, os.X_OK):
        unavailable(f"no redis-server at {REDIS_SERVER}")
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def postgres_url():
    """A database of the test's own on the shared PostgreSQL, dropped afterwards."""
    with postgres_database() as url:
        yield url
