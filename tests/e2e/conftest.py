"""Fixtures of the end-to-end tests; the machinery is in e2e_support.py."""

from __future__ import annotations

import pytest
from e2e_support import JaccServer, app_source, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> JaccServer:
    """The seed's walkers and the extras, with a fixed secret; one per test module."""
    running = start_server(tmp_path_factory.mktemp("app"), app_source("seed", "extras"))
    yield running
    running.stop()
