"""The Prometheus metrics (runtime/server/metrics.py): names, labels, the app's own registry,
the multiprocess mode. tests/e2e/test_metrics_live.py scrapes a real `jacc serve`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from jacc_runtime import Walker, entry, field, report
from jacc_runtime.server.app import JaccApp, default_config
from jacc_runtime.server.auth import TokenService
from jacc_runtime.server.metrics import (
    MULTIPROC_ENV,
    Metrics,
    NoMetrics,
    ServerState,
    shared_across_workers,
)
from jacc_runtime.server.ws.backplane import BackplaneEvents, MemoryBackplane
from prometheus_client.parser import text_string_to_metric_families

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SECRET = "unit-test-secret-of-at-least-32-bytes!"
DOCS = Path(__file__).resolve().parent.parent / "docs"


class Echo(Walker, protocol="websocket", public=True):
    message = field("str")

    @entry
    async def echo(self):
        report(self, {"echo": self.message})


class Private(Walker, protocol="websocket"):
    message = field("str")

    @entry
    async def echo(self):
        report(self, self.message)


class Add(Walker, public=True):
    a = field("int")

    @entry
    def add(self):
        report(self, self.a + 1)


def samples(text: str | bytes) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    if isinstance(text, bytes):
        text = text.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def app(metrics: bool = True) -> JaccApp:
    config = default_config()
    config = replace(config, server=replace(config.server, metrics=metrics))
    return JaccApp([Echo, Private, Add], tokens=TokenService(SECRET), config=config)


# --- the metrics themselves -----------------------------------------------------------------


def test_walker_children_are_bound_once_and_count():
    metrics = Metrics()
    echo = metrics.walker("Echo")
    assert metrics.walker("Echo") is echo
    echo.frame_in()
    echo.frame_in()
    echo.frame_out()
    echo.ran(0.003)
    echo.opened()
    scrape = samples(metrics.expose()[0])
    assert value(scrape, "jacc_ws_frames_received_total", walker="Echo") == 2
    assert value(scrape, "jacc_ws_frames_sent_total", walker="Echo") == 1
    assert value(scrape, "jacc_walker_run_seconds_count", walker="Echo") == 1
    assert value(scrape, "jacc_walker_run_seconds_bucket", walker="Echo", le="0.005") == 1
    assert value(scrape, "jacc_walker_run_seconds_bucket", walker="Echo", le="0.0025") == 0
    assert value(scrape, "jacc_ws_connections", walker="Echo") == 1
    echo.closed(4408, True, "send_queue_bytes")
    scrape = samples(metrics.expose()[0])
    assert value(scrape, "jacc_ws_connections", walker="Echo") == 0
    assert value(scrape, "jacc_ws_closes_total", code="4408", by="server") == 1
    assert value(scrape, "jacc_ws_slow_consumer_closes_total", reason="send_queue_bytes") == 1


def test_every_metric_is_jacc_prefixed_and_documented():
    docs = (DOCS / "operations.md").read_text()
    names = {family.name for family in Metrics().registry.collect()}
    assert names and all(name.startswith("jacc_") for name in names)
    for name in names:
        assert f"`{name}" in docs, name


def test_the_dashboard_queries_only_metrics_that_exist():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    families = {family.name for family in Metrics().registry.collect()}
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"jacc_[a-z_]+", target["expr"]))
    assert queried
    for name in queried:
        assert re.sub(r"_(total|bucket|sum|count)$", "", name) in families, name
    # Every metric has a panel.
    assert {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in queried} == families


def test_unauthorized_errors_are_authentication_failures_by_reason():
    metrics = Metrics()
    metrics.error("UNAUTHORIZED", "ws", "expired")
    metrics.error("UNAUTHORIZED", "http", "invalid")
    metrics.error("INVALID_CREDENTIALS", "http", None)
    metrics.error("RATE_LIMITED", "ws", "messages_per_second")
    metrics.auth_failure("a token's text must never become a label")
    scrape = samples(metrics.expose()[0])
    assert value(scrape, "jacc_errors_total", code="UNAUTHORIZED", transport="ws") == 1
    assert value(scrape, "jacc_errors_total", code="RATE_LIMITED", transport="ws") == 1
    assert value(scrape, "jacc_auth_failures_total", reason="expired") == 1
    assert value(scrape, "jacc_auth_failures_total", reason="invalid") == 1
    assert value(scrape, "jacc_auth_failures_total", reason="credentials") == 1
    assert value(scrape, "jacc_auth_failures_total", reason="other") == 1


def test_a_client_cannot_grow_the_close_codes():
    metrics = Metrics()
    for code in range(4000, 4100):
        metrics.closed(code, False, None)
    metrics.closed(1001, False, None)
    metrics.closed(None, False, None)
    scrape = samples(metrics.expose()[0])
    codes = {dict(labels)["code"] for (name, labels) in scrape
             if name == "jacc_ws_closes_total"}
    assert codes <= {"other", "1001", "4401", "4403", "4408", "4413", "4503", "none"}
    assert value(scrape, "jacc_ws_closes_total", code="other", by="client") > 90


def test_sampled_gauges_read_the_state_at_each_scrape():
    state = ServerState(queued_bytes=3000, largest_queue=2000, loop_blocked=2)
    metrics = Metrics(lambda: state)
    scrape = samples(metrics.expose()[0])
    assert value(scrape, "jacc_ws_outbound_queue_bytes") == 3000
    assert value(scrape, "jacc_ws_outbound_queue_largest_bytes") == 2000
    assert value(scrape, "jacc_event_loop_blocked_total") == 2
    state = ServerState(loop_blocked=3)
    scrape = samples(metrics.expose()[0])
    assert value(scrape, "jacc_event_loop_blocked_total") == 3  # counted once each
    assert value(scrape, "jacc_ws_outbound_queue_bytes") == 0


def test_timed_publish_passes_the_result_through_and_times_failures():
    metrics = Metrics()

    async def publish(channel: str, frame: str) -> str:
        if frame == "bad":
            raise RuntimeError("down")
        return "1-0"

    timed = metrics.timed_publish(publish)

    async def scenario():
        assert await timed("Chat", "ok") == "1-0"
        with pytest.raises(RuntimeError):
            await timed("Chat", "bad")

    asyncio.run(scenario())
    assert value(samples(metrics.expose()[0]), "jacc_backplane_publish_seconds_count") == 2


def test_backplane_hooks_reach_the_metrics():
    jacc = app()
    assert isinstance(jacc.backplane.events, BackplaneEvents)
    jacc.backplane.events.reconnected()
    jacc.backplane.events.lag(0.02)
    scrape = samples(jacc.metrics.expose()[0])
    assert value(scrape, "jacc_backplane_reconnects_total") == 1
    assert value(scrape, "jacc_backplane_lag_seconds_count") == 1
    # Another backplane, never given to an app, reports to no one.
    assert isinstance(MemoryBackplane().events, BackplaneEvents)


def test_two_apps_count_apart():
    first, second = app(), app()
    first.metrics.walker("Echo").frame_in()
    assert value(samples(first.metrics.expose()[0]),
                 "jacc_ws_frames_received_total", walker="Echo") == 1
    assert value(samples(second.metrics.expose()[0]),
                 "jacc_ws_frames_received_total", walker="Echo") == 0


# --- through the app ---------------------------------------------------------------------------


def test_the_app_counts_frames_runs_errors_and_closes():
    jacc = app()
    with TestClient(jacc) as client:
        with client.websocket_connect("/ws/Echo") as ws:
            for i in range(3):
                ws.send_json({"message": str(i)})
                assert ws.receive_json()["ok"] is True
            ws.send_text("not json")
            assert ws.receive_json()["error"]["code"] == "INVALID_PAYLOAD"
        with client.websocket_connect("/ws/Private") as ws:
            ws.send_json({"message": "hi", "token": "garbage"})
            assert ws.receive_json()["error"]["code"] == "UNAUTHORIZED"
        scrape = samples(client.get("/metrics").text)
    assert value(scrape, "jacc_ws_frames_received_total", walker="Echo") == 4
    assert value(scrape, "jacc_ws_frames_sent_total", walker="Echo") == 4
    assert value(scrape, "jacc_walker_run_seconds_count", walker="Echo") == 3
    assert value(scrape, "jacc_errors_total", code="INVALID_PAYLOAD", transport="ws") == 1
    assert value(scrape, "jacc_auth_failures_total", reason="invalid") == 1
    assert value(scrape, "jacc_ws_closes_total", code="4401", by="server") == 1
    assert value(scrape, "jacc_ws_connections", walker="Echo") == 0


def test_http_requests_are_counted_by_route_template_never_the_path():
    jacc = app()
    with TestClient(jacc) as client:
        assert client.post("/walker/Add", json={"a": 1}).status_code == 200
        assert client.post("/walker/Add", json={"a": "x"}).status_code == 422
        assert client.get("/no/such/path/with/secret-looking-text").status_code == 404
        scrape = samples(client.get("/metrics").text)
    routes = {dict(labels)["route"] for (name, labels) in scrape
              if name == "jacc_http_requests_total"}
    assert routes == {"/walker/{name}", "none"}
    assert value(scrape, "jacc_http_requests_total", route="/walker/{name}", status="200") == 1
    assert value(scrape, "jacc_http_requests_total", route="/walker/{name}", status="422") == 1
    assert value(scrape, "jacc_errors_total", code="INVALID_PAYLOAD", transport="http") == 1
    assert value(scrape, "jacc_walker_run_seconds_count", walker="Add") == 1


def test_metrics_false_serves_no_route_and_records_nothing():
    jacc = app(metrics=False)
    assert isinstance(jacc.metrics, NoMetrics)
    with TestClient(jacc) as client:
        with client.websocket_connect("/ws/Echo") as ws:
            ws.send_json({"message": "hi"})
            assert ws.receive_json()["ok"] is True
        assert client.get("/metrics").status_code == 404


# --- several workers --------------------------------------------------------------------------

_WORKER = """
from jacc_runtime.server.metrics import Metrics
metrics = Metrics()
echo = metrics.walker("Echo")
for _ in range({frames}):
    echo.frame_in()
echo.opened()
metrics.sample()  # what a worker's sampler does each second, and once more as it stops
"""

_SCRAPE = """
from jacc_runtime.server.metrics import Metrics
print(Metrics().expose()[0].decode())
"""


def test_workers_share_their_counts_through_the_multiprocess_folder():
    environ = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    with shared_across_workers(environ) as folder:
        assert environ[MULTIPROC_ENV] == str(folder)
        for frames in (2, 3):  # two workers, each a fresh interpreter
            subprocess.run([sys.executable, "-c", _WORKER.format(frames=frames)],
                           env=environ, check=True, timeout=60)
        scrape = subprocess.run([sys.executable, "-c", _SCRAPE], env=environ, check=True,
                                timeout=60, capture_output=True, text=True).stdout
        assert list(folder.glob("*.db"))
    assert MULTIPROC_ENV not in environ and not folder.exists()  # cleaned up
    scrape = samples(scrape)
    assert value(scrape, "jacc_ws_frames_received_total", walker="Echo") == 5
    # A live gauge of a process that is gone (both workers have exited) still shows
    # until worker_exited(pid); the scraper's own process is live and adds 0.
    assert value(scrape, "jacc_ws_connections", walker="Echo") == 2


def test_an_operators_multiprocess_folder_is_emptied_and_kept(tmp_path):
    stale = tmp_path / "counter_1.db"
    stale.write_bytes(b"an earlier run")
    environ = {MULTIPROC_ENV: str(tmp_path)}
    with shared_across_workers(environ) as folder:
        assert folder == tmp_path and not stale.exists()
    assert tmp_path.exists() and environ[MULTIPROC_ENV] == str(tmp_path)


def test_a_tally_flushes_to_what_observe_would_have_made():
    from jacc_runtime.server.metrics import Tally
    from prometheus_client import CollectorRegistry, Histogram

    observed, tallied = (Histogram("h", "h", registry=CollectorRegistry(),
                                   buckets=(0.01, 0.1, 1.0)) for _ in range(2))
    tally = Tally(tallied)
    values = [0.0, 0.01, 0.010001, 0.05, 0.1, 0.5, 1.0, 3.0, 1e9]
    for v in values:
        observed.observe(v)
        tally.observe(v)
    tally.flush()
    tally.flush()  # nothing twice
    def shown(histogram):
        return [s for s in histogram.collect()[0].samples if s.name != "h_created"]

    assert shown(observed) == shown(tallied)


def test_tallies_reach_the_scrape_only_when_sampled():
    metrics = Metrics()
    metrics.walker("Echo").frame_in()
    assert value(samples(generate(metrics)), "jacc_ws_frames_received_total", walker="Echo") == 0
    metrics.sample()
    assert value(samples(generate(metrics)), "jacc_ws_frames_received_total", walker="Echo") == 1
    assert value(samples(metrics.expose()[0]), "jacc_ws_frames_received_total",
                 walker="Echo") == 1  # a scrape samples first; counted once


def generate(metrics: Metrics) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry)
