"""Broadcast (docs/protocol.md) against a real `jacc serve`: delivery, order, privacy, slow consumers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from e2e_support import (
    SECRET,
    StalledClient,
    app_source,
    ask,
    run,
    server_env,
    start_server,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jacc_runtime.server.auth import TokenService

TOKENS = TokenService(SECRET)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A long send timeout: if a slow reader could hold the others up, it would show.
    # No rate limit to speak of: one client sends thousands of frames as fast as it can.
    env = server_env(JACC_WEBSOCKET_SEND_TIMEOUT_SECONDS="30",
                     JACC_WEBSOCKET_MESSAGES_PER_SECOND="1000000")
    running = start_server(tmp_path_factory.mktemp("app"), app_source("seed", "extras"), env=env)
    yield running
    running.stop()


async def nothing_more(ws, wait: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), wait)
    except asyncio.TimeoutError:
        return True
    return False


def test_every_client_gets_every_broadcast_once_in_one_order(server):
    clients, messages = 5, 20

    async def scenario():
        sockets = [await connect(server.ws("/ws/ChatRoom")) for _ in range(clients)]
        try:
            await asyncio.sleep(0.1)

            async def talk(index, ws):
                for n in range(messages):
                    await ws.send(json.dumps({"message": f"{index}:{n}", "sender": str(index)}))

            async def listen(ws):
                frames = [json.loads(await ws.recv()) for _ in range(clients * messages)]
                assert await nothing_more(ws)
                return [frame["data"]["reports"][0]["content"] for frame in frames]

            listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
            await asyncio.gather(*(talk(i, ws) for i, ws in enumerate(sockets)))
            return await asyncio.gather(*listeners)
        finally:
            for ws in sockets:
                await ws.close()

    seen = run(scenario())
    first = seen[0]
    assert sorted(first) == sorted(f"{i}:{n}" for i in range(clients) for n in range(messages))
    for other in seen[1:]:
        assert other == first  # the same order everywhere, sender included
    for index in range(clients):
        mine = [content for content in first if content.startswith(f"{index}:")]
        assert mine == [f"{index}:{n}" for n in range(messages)]  # in the sender's order


def test_errors_go_only_to_the_sender(server):
    async def scenario():
        async with connect(server.ws("/ws/ChatRoom")) as sender, \
                connect(server.ws("/ws/ChatRoom")) as other:
            await asyncio.sleep(0.1)
            error = await ask(sender, {"mesage": "typo"})
            assert error["error"]["code"] == "INVALID_PAYLOAD"
            pong = await ask(sender, {"type": "ping"})
            assert pong["type"] == "pong"
            assert await nothing_more(other)
            await sender.send(json.dumps({"message": "real"}))
            assert json.loads(await sender.recv())["data"]["reports"][0]["content"] == "real"
            assert json.loads(await other.recv())["data"]["reports"][0]["content"] == "real"

    run(scenario())


def test_private_broadcast_never_reaches_an_unauthenticated_connection(server):
    async def scenario():
        alice = await connect(server.ws(f"/ws/TeamChat?token={TOKENS.issue('alice')}"))
        bob = await connect(server.ws("/ws/TeamChat"))
        stranger = await connect(server.ws("/ws/TeamChat"))  # connected, never authenticates
        try:
            # Bob authenticates with his first frame, which also runs as a request.
            await bob.send(json.dumps({"message": "bob here", "token": TOKENS.issue("bob")}))
            for ws in (alice, bob):
                assert json.loads(await ws.recv())["data"]["reports"][0]["content"] == "bob here"
            for n in range(3):
                await alice.send(json.dumps({"message": f"secret {n}"}))
            for ws in (alice, bob):
                for n in range(3):
                    frame = json.loads(await ws.recv())
                    assert frame["data"]["reports"][0]["content"] == f"secret {n}"
            assert await nothing_more(stranger)
            # The stranger's first frame has no token: the only thing it ever gets is the refusal.
            await stranger.send(json.dumps({"message": "let me in"}))
            frame = json.loads(await stranger.recv())
            assert frame["error"]["code"] == "UNAUTHORIZED"
            with pytest.raises(ConnectionClosed) as caught:
                await stranger.recv()
            assert caught.value.rcvd.code == 4401
            assert await nothing_more(alice) and await nothing_more(bob)
        finally:
            for ws in (alice, bob, stranger):
                await ws.close()

    run(scenario())


# --- a client that stops reading ---------------------------------------------------------


def test_a_client_that_stops_reading_does_not_delay_the_others(server):
    frames, size = 5000, 4000

    stalled = StalledClient(server.port, "/ws/Firehose")

    async def scenario():
        sender = await connect(server.ws("/ws/Firehose"), max_size=None)
        others = [await connect(server.ws("/ws/Firehose"), max_size=None) for _ in range(2)]
        try:
            assert server.wait_connections(4)["by_walker"]["Firehose"] == 4

            # The sender keeps a window of frames in flight, as a chat client would: the
            # readers share one event loop with it and must not be outrun themselves.
            window, progress = 100, asyncio.Event()
            seen = [[] for _ in range(3)]

            async def drain(ws, seqs):
                while len(seqs) < frames:
                    seqs.append(json.loads(await ws.recv())["data"]["reports"][0]["seq"])
                    progress.set()
                return seqs

            started = time.monotonic()
            readers = [asyncio.create_task(drain(ws, seqs))
                       for ws, seqs in zip((sender, *others), seen)]
            for seq in range(frames):
                while seq - min(len(seqs) for seqs in seen) >= window:
                    progress.clear()
                    await progress.wait()
                await sender.send(json.dumps({"seq": seq, "size": size}))
            received = await asyncio.wait_for(asyncio.gather(*readers), 60)
            return received, time.monotonic() - started
        finally:
            for ws in (sender, *others):
                await ws.close()

    try:
        received, elapsed = run(scenario())
        for seqs in received:
            assert seqs == list(range(frames))  # every frame, in order, nothing lost
        # Far below the 30 s send timeout: nobody waited for the stalled client.
        assert elapsed < 20, elapsed
        texts, close = stalled.read_all(timeout=10)
    finally:
        stalled.close()
    assert close is not None and close.code == 4408, close
    assert texts < frames  # it lost the frames it could not take, and only it
    assert server.wait_connections(0)["connections"] == 0


def test_a_stalled_reader_of_large_broadcasts_is_closed_once_about_1_mib_is_queued(server):
    # The queue is bounded in bytes (send_queue_bytes, 1 MiB by default), not in frames:
    # 512 KB frames fill it in two, where 256 frames would have pinned 128 MB.
    # Enough frames to get past the kernel's buffers too: on loopback the server's socket
    # may take up to 4 MB (tcp_wmem) before the stalled reader's frames start to queue.
    frames, size = 24, 512 * 1024
    stalled = StalledClient(server.port, "/ws/Firehose")

    async def scenario():
        sender = await connect(server.ws("/ws/Firehose"), max_size=None)
        other = await connect(server.ws("/ws/Firehose"), max_size=None)
        try:
            assert server.wait_connections(3)["by_walker"]["Firehose"] == 3
            seen: list[list[int]] = [[], []]
            progress = asyncio.Event()

            async def drain(ws, seqs):
                while len(seqs) < frames:
                    seqs.append(json.loads(await ws.recv())["data"]["reports"][0]["seq"])
                    progress.set()

            readers = [asyncio.create_task(drain(ws, seqs)) for ws, seqs in zip((sender, other), seen)]
            started = time.monotonic()
            for seq in range(frames):
                # One frame in flight at a time: 4 MB sent at once would be more than a
                # 1 MiB queue holds even for a client that reads as fast as it can.
                while min(len(seqs) for seqs in seen) < seq:
                    progress.clear()
                    await progress.wait()
                await sender.send(json.dumps({"seq": seq, "size": size}))
            await asyncio.wait_for(asyncio.gather(*readers), 60)
            return seen, time.monotonic() - started
        finally:
            for ws in (sender, other):
                await ws.close()

    log_before = len(server.log())
    try:
        seen, elapsed = run(scenario())
        assert seen == [list(range(frames))] * 2  # the others get every frame, in order
        assert elapsed < 20, elapsed  # nobody waited for the stalled one (send timeout 30 s)
        texts, close = stalled.read_all(timeout=10)
    finally:
        stalled.close()
    assert close is not None and close.code == 4408, close
    # What it got is what the socket's buffers held when it stalled; the frames queued
    # behind them (two: 1 MiB) were dropped with the backlog when the next came.
    assert texts <= frames - 3, texts
    # Closed for the bytes queued, long before its send timeout (30 s here) came into it.
    assert "went over send_queue_bytes (1048576)" in server.log()[log_before:]
    assert server.wait_connections(0)["connections"] == 0
