"""Scaling out (docs/scaling.md) with real processes: `jacc serve` hosts and workers on one
Redis, Redis killed under them, resume across hosts, connection caps across hosts.

Every server here uses a Redis key namespace of its own test; the fault test runs
its own `redis-server` and kills that one, never the shared Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict

import httpx
import pytest
from e2e_support import SECRET, app_source, run, server_env, start_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jacc_runtime.server.auth import TokenService

TOKENS = TokenService(SECRET)
SOURCE = app_source("scale")


def scale_env(url: str, namespace: str, **settings: str) -> dict[str, str]:
    return server_env(JACC_WEBSOCKET_BACKPLANE=url, JACC_WEBSOCKET_BACKPLANE_NAMESPACE=namespace,
                      JACC_WEBSOCKET_MESSAGES_PER_SECOND="1000000", **settings)


@pytest.fixture
def hosts(tmp_path_factory, redis_url, redis_namespace):
    """Start `jacc serve` processes on the shared Redis, in the test's namespace."""
    started = []

    def start(*args: str, url: str = redis_url, **settings: str):
        server = start_server(tmp_path_factory.mktemp("host"), SOURCE,
                              env=scale_env(url, redis_namespace, **settings), args=args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def report(frame: dict) -> dict:
    return frame["data"]["reports"][0]


async def nothing_more(ws, wait: float = 0.5) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), wait)
    except asyncio.TimeoutError:
        return True
    return False


async def exchange(sides: dict[str, list], per_side: int) -> dict[str, list[list[str]]]:
    """Each side's clients send `per_side` ChatRoom messages between them, all sides at once;
    return what every client received (contents, in order)."""
    everyone = [ws for clients in sides.values() for ws in clients]
    total = per_side * len(sides)

    async def talk(side: str, index: int, ws) -> None:
        clients = len(sides[side])
        for n in range(index, per_side, clients):
            await ws.send(json.dumps({"message": f"{side}:{n}", "sender": side}))
            await asyncio.sleep(0)

    async def listen(ws) -> list[str]:
        got = [report(json.loads(await asyncio.wait_for(ws.recv(), 30)))["content"]
               for _ in range(total)]
        assert await nothing_more(ws)
        return got

    listeners = [asyncio.create_task(listen(ws)) for ws in everyone]
    await asyncio.gather(*(talk(side, i, ws) for side, clients in sides.items()
                           for i, ws in enumerate(clients)))
    received = await asyncio.gather(*listeners)
    out: dict[str, list[list[str]]] = {}
    position = 0
    for side, clients in sides.items():
        out[side] = received[position:position + len(clients)]
        position += len(clients)
    return out


def assert_one_order(received: dict[str, list[list[str]]], per_side: int) -> None:
    lists = [got for side in received.values() for got in side]
    expected = sorted(f"{side}:{n}" for side in received for n in range(per_side))
    first = lists[0]
    assert sorted(first) == expected  # every broadcast, exactly once
    for other in lists[1:]:
        assert other == first  # and the same order for everyone, on every side
    for side, clients in received.items():
        # Each client sent its share in order (its senders interleave with each other).
        for index in range(len(clients)):
            sent = [f"{side}:{n}" for n in range(index, per_side, len(clients))]
            assert [c for c in first if c in set(sent)] == sent


# --- two hosts, one Redis ------------------------------------------------------------------


def test_two_hosts_deliver_every_broadcast_once_in_one_order(hosts):
    a, b = hosts(), hosts()
    token = TOKENS.issue("ada")

    async def scenario():
        sides = {"A": [await connect(a.ws("/ws/ChatRoom")) for _ in range(3)],
                 "B": [await connect(b.ws("/ws/ChatRoom")) for _ in range(3)]}
        # Private broadcast walker: an anonymous socket on each side, a signed-in one too.
        anonymous = [await connect(h.ws("/ws/TeamChat")) for h in (a, b)]
        team = [await connect(h.ws(f"/ws/TeamChat?token={token}")) for h in (a, b)]
        try:
            await asyncio.sleep(0.2)
            received = await exchange(sides, 200)
            for ws in team:
                await ws.send(json.dumps({"message": "private"}))
            team_got = [[json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
                        for ws in team]
            silent = [await nothing_more(ws, 1.0) for ws in anonymous]
            return received, team_got, silent
        finally:
            for ws in [*sides["A"], *sides["B"], *anonymous, *team]:
                await ws.close()

    received, team_got, silent = run(scenario())
    assert_one_order(received, 200)
    assert all(report(frame)["content"] == "private" for got in team_got for frame in got)
    assert silent == [True, True]  # never a private broadcast before a token


def test_accounts_in_postgresql_and_tokens_good_on_every_host(hosts, postgres_url):
    a = hosts(JACC_AUTH_DATABASE=postgres_url)
    b = hosts("--workers", "2", JACC_AUTH_DATABASE=postgres_url)
    account = {"identities": [{"type": "username", "value": "ada"}],
               "credential": {"type": "password", "password": "correct horse"}}
    login = {"identity": account["identities"][0], "credential": account["credential"]}
    assert httpx.post(f"{a.http}/user/register", json=account, timeout=10).status_code == 201
    again = httpx.post(f"{b.http}/user/register", json=account, timeout=10)
    assert again.status_code == 400 and again.json()["error"]["code"] == "IDENTITY_TAKEN"
    from_a = httpx.post(f"{a.http}/user/login", json=login, timeout=10).json()["data"]
    from_b = httpx.post(f"{b.http}/user/login", json=login, timeout=10).json()["data"]
    assert from_a["user_id"] == from_b["user_id"]  # one account, whichever host is asked

    async def use(server, token: str) -> dict:
        async with connect(server.ws(f"/ws/TeamChat?token={token}")) as ws:
            await ws.send(json.dumps({"message": "hello"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert report(run(use(b, from_a["token"])))["authenticated"] is True  # A's token on B
    assert report(run(use(a, from_b["token"])))["authenticated"] is True  # and B's on A


# --- workers ----------------------------------------------------------------------------------


async def placed(server, per_worker: int, workers: int = 2) -> dict[int, list]:
    """ChatRoom clients, `per_worker` on each worker: connect until each worker has its share.

    A client learns its worker from its own first broadcast (the report names the pid
    that ran it). Clients already placed receive the later ones' first broadcasts,
    which are read and dropped here, so that the test proper starts clean.
    """
    kept: dict[int, list] = defaultdict(list)
    joined: list[tuple[object, int]] = []  # (client, hellos sent when it joined)
    hellos = 0
    for attempt in range(200):
        ws = await connect(server.ws("/ws/ChatRoom"))
        await ws.send(json.dumps({"message": "hello", "sender": f"h{attempt}"}))
        while True:
            got = report(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            if got["sender"] == f"h{attempt}":
                break
        hellos += 1
        worker = got["worker"]
        if len(kept[worker]) < per_worker:
            kept[worker].append(ws)
            joined.append((ws, hellos))
        else:
            await ws.close()
        if len(kept) == workers and all(len(c) == per_worker for c in kept.values()):
            break
    assert len(kept) == workers, f"connections reached {len(kept)} worker(s) only"
    for ws, at in joined:
        for _ in range(hellos - at):
            assert report(json.loads(await asyncio.wait_for(ws.recv(), 10)))["content"] == "hello"
    return kept


def test_two_workers_deliver_every_broadcast_once_in_one_order(hosts):
    server = hosts("--workers", "2")

    async def scenario():
        kept = await placed(server, 3)
        sides = {f"W{n}": clients for n, clients in enumerate(kept.values())}
        try:
            return await exchange(sides, 200)
        finally:
            for clients in sides.values():
                for ws in clients:
                    await ws.close()

    assert_one_order(run(scenario()), 200)


def test_sigterm_to_the_parent_drains_every_worker_and_exits_0(hosts):
    server = hosts("--workers", "2")

    async def scenario():
        kept = await placed(server, 2)
        clients = [ws for group in kept.values() for ws in group]
        server.process.send_signal(signal.SIGTERM)
        codes = []
        for ws in clients:
            try:
                await asyncio.wait_for(ws.recv(), 15)
            except ConnectionClosed as closed:
                codes.append(closed.rcvd.code if closed.rcvd else None)
        return sorted(kept), codes

    pids, codes = run(scenario())
    assert codes == [1001] * 4  # every worker closed its sockets as a lone server does
    assert server.process.wait(30) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # no worker left behind


def metric(text: str, name: str, walker: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{walker="{walker}"}} '):
            return float(line.split()[-1])
    return 0.0


def test_metrics_of_two_workers_are_one_set_whichever_answers(hosts):
    server = hosts("--workers", "2")

    async def scenario():
        kept = await placed(server, 2)
        try:
            scrapes = []
            for _ in range(6):  # each scrape lands on one worker or the other
                text = httpx.get(f"{server.http}/metrics", timeout=10).text
                scrapes.append((metric(text, "jacc_ws_connections", "ChatRoom"),
                                metric(text, "jacc_ws_frames_sent_total", "ChatRoom")))
                await asyncio.sleep(0.3)
            return scrapes
        finally:
            for clients in kept.values():
                for ws in clients:
                    await ws.close()

    scrapes = run(scenario())
    # Four clients, two on each worker, counted together by either worker's answer.
    assert {connections for connections, _ in scrapes} == {4.0}
    assert all(sent > 0 for _, sent in scrapes)


# --- Redis killed under a stream of broadcasts ---------------------------------------------


def test_redis_killed_and_restarted_during_a_stream_of_broadcasts(tmp_path_factory,
                                                                    redis_server):
    redis = redis_server()
    env = scale_env(redis.url, "fault")
    a = start_server(tmp_path_factory.mktemp("a"), SOURCE, env=env)
    b = start_server(tmp_path_factory.mktemp("b"), SOURCE, env=env)
    per_sender = 500
    timeline: dict[str, float] = {}

    async def send(server, name: str) -> tuple[list[str], list[float], list[float]]:
        accepted, refused_at, accepted_at = [], [], []
        async with connect(server.ws("/ws/ChatRoom")) as ws:
            for n in range(per_sender):
                message = f"{name}:{n}"
                await ws.send(json.dumps({"message": message, "sender": name}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    if not frame["ok"]:
                        assert frame["error"]["code"] == "SERVICE_UNAVAILABLE"
                        refused_at.append(time.monotonic())
                        break
                    if report(frame)["content"] == message:
                        accepted.append(message)
                        accepted_at.append(time.monotonic())
                        break
                # Slower while refused, so that the stream outlasts the outage and shows
                # broadcasts flowing again after it, however busy the machine is.
                await asyncio.sleep(0.025 if refused_at and refused_at[-1] >= (
                    accepted_at[-1] if accepted_at else 0) else 0.004)
        return accepted, refused_at, accepted_at

    async def listen(ws, stop: asyncio.Event) -> list[str]:
        got = []
        while not stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except asyncio.TimeoutError:
                continue
            got.append(report(frame)["content"])
        return got

    async def fault() -> None:
        await asyncio.sleep(1.0)
        timeline["killed"] = time.monotonic()
        redis.kill()
        await asyncio.sleep(1.5)
        await asyncio.to_thread(redis.start)  # empty: no persistence
        timeline["restarted"] = time.monotonic()

    async def scenario():
        listeners = [await connect(h.ws("/ws/ChatRoom")) for h in (a, b, a, b)]
        await asyncio.sleep(0.3)  # admitted (counted in Redis) a moment after the handshake
        stop = asyncio.Event()
        listening = [asyncio.create_task(listen(ws, stop)) for ws in listeners]
        try:
            results = await asyncio.gather(send(a, "A"), send(b, "B"), fault())
            await asyncio.sleep(1.0)
            stop.set()
            return results[:2], await asyncio.gather(*listening)
        finally:
            for ws in listeners:
                await ws.close()

    try:
        senders, heard = run(scenario())
        alive = [a.process.poll() is None, b.process.poll() is None]
    finally:
        a.stop()
        b.stop()
    assert alive == [True, True]  # no server process died
    killed, restarted = timeline["killed"], timeline["restarted"]
    accepted = {m for accepted, _, _ in senders for m in accepted}
    for accepted_list, refused_at, accepted_at in senders:
        assert refused_at, "the stream did not span the outage"
        assert all(killed <= t <= restarted + 5 for t in refused_at)  # only while down
        after = [t for t in accepted_at if t > restarted]
        assert after and after[0] - restarted < 5  # flowing again within 5 s
    first = heard[0]
    assert len(first) == len(set(first)) and set(first) == accepted  # once each, all of them
    for other in heard[1:]:
        assert other == first  # in one order on every client of both hosts
    for accepted_list, _, _ in senders:
        assert [m for m in first if m in set(accepted_list)] == accepted_list


# --- resume across hosts ------------------------------------------------------------------------


def test_a_client_resumes_on_one_host_what_was_sent_on_the_other(hosts):
    a = hosts(JACC_WEBSOCKET_HISTORY="20")
    b = hosts(JACC_WEBSOCKET_HISTORY="20")

    async def say(server, messages) -> None:
        async with connect(server.ws("/ws/ChatRoom")) as ws:
            for message in messages:
                await ws.send(json.dumps({"message": message}))
                while report(json.loads(await ws.recv()))["content"] != message:
                    pass

    async def scenario():
        async with connect(a.ws("/ws/ChatRoom?offsets=1")) as ws:
            await say(b, ["before"])
            last = json.loads(await asyncio.wait_for(ws.recv(), 10))["offset"]
        await say(b, [f"missed {n}" for n in range(10)])
        async with connect(a.ws(f"/ws/ChatRoom?offsets=1&since={last}")) as ws:
            replayed = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(11)]
            await say(b, ["live"])
            live = json.loads(await asyncio.wait_for(ws.recv(), 10))
            quiet = await nothing_more(ws)
        await say(b, [f"more {n}" for n in range(30)])
        async with connect(a.ws(f"/ws/ChatRoom?since={last}")) as ws:
            trimmed = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await say(b, ["after trim"])
            after_trim = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return replayed, live, quiet, trimmed, after_trim

    replayed, live, quiet, trimmed, after_trim = run(scenario())
    assert [report(f)["content"] for f in replayed[:10]] == [f"missed {n}" for n in range(10)]
    offsets = [f["offset"] for f in replayed[:10]] + [live["offset"]]
    assert offsets == sorted(offsets, key=lambda o: tuple(map(int, o.split("-"))))
    assert replayed[10] == {"type": "resumed", "ok": True, "missed": 10}
    assert report(live)["content"] == "live" and quiet  # then live frames, nothing twice
    assert trimmed == {"type": "resumed", "ok": False, "reason": "history_trimmed"}
    assert report(after_trim)["content"] == "after trim"


# --- connection caps across hosts --------------------------------------------------------------


async def echo_connection(server, token: str):
    """Connect to EchoMessage as the token's user: (socket, None) if admitted, else (None,
    (error code, close code))."""
    ws = await connect(server.ws(f"/ws/EchoMessage?token={token}"))
    try:
        await ws.send(json.dumps({"message": "hi"}))
    except ConnectionClosed:
        pass  # refused at once: its error frame is still there to read
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if frame["ok"]:
        return ws, None
    try:
        await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as closed:
        return None, (frame["error"]["code"], closed.rcvd.code)
    raise AssertionError("a refused connection was not closed")


def test_the_user_cap_counts_across_hosts_and_a_killed_hosts_share_expires(hosts):
    a = hosts(JACC_WEBSOCKET_MAX_CONNECTIONS_PER_USER="2")
    b = hosts(JACC_WEBSOCKET_MAX_CONNECTIONS_PER_USER="2")
    token = TOKENS.issue("ada")

    async def scenario():
        on_a, refused = await echo_connection(a, token)
        on_b, _ = await echo_connection(b, token)
        assert on_a is not None and on_b is not None
        third, refusal = await echo_connection(b, token)
        assert third is None
        a.process.kill()  # kill -9: no goodbye, its heartbeat just stops
        killed = time.monotonic()
        while True:
            admitted, _ = await echo_connection(b, token)
            if admitted is not None:
                waited = time.monotonic() - killed
                await admitted.close()
                break
            assert time.monotonic() - killed < 10, "not admitted within 10 s"
            await asyncio.sleep(0.25)
        await on_b.close()
        return refusal, waited

    refusal, waited = run(scenario())
    assert refusal == ("CAPACITY", 4403)
    assert waited < 10
