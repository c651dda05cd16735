"""The frames websocket.py reads and writes itself are the library's frames, byte for byte:
what it writes is what `websockets` serializes, and what it measures of a client's
frame is what `websockets` parses. tests/e2e/test_frame_reading.py drives the reading
side through a real server."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jacc_runtime.server import websocket
from websockets.frames import Frame, Opcode

# Payload sizes on either side of each length encoding (7 bits, 16 bits, 64 bits).
EDGES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("size", EDGES)
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_a_server_frame_is_what_websockets_serializes(opcode, size):
    payload = bytes(i % 251 for i in range(size))
    assert websocket.server_frame(opcode.value, payload) == \
        Frame(opcode, payload).serialize(mask=False)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), opcode=st.sampled_from([Opcode.TEXT, Opcode.BINARY]))
def test_server_frames_agree_with_websockets_on_any_payload(payload, opcode):
    assert websocket.server_frame(opcode.value, payload) == \
        Frame(opcode, payload).serialize(mask=False)


@pytest.mark.parametrize("size", EDGES)
@pytest.mark.parametrize("masked", [True, False])
def test_the_length_of_a_client_frame_is_read_from_its_head(size, masked):
    frame = Frame(Opcode.TEXT, b"x" * size).serialize(mask=masked)
    head, length = websocket._frame_length(frame, 0)
    assert length == size and head + length == len(frame)
    # Behind another frame, and with only part of its head there yet.
    before = Frame(Opcode.PING, b"hi").serialize(mask=True)
    assert websocket._frame_length(before + frame, len(before)) == (head, length)
    for cut in range(head - (4 if masked else 0)):
        assert websocket._frame_length(frame[:cut], 0) is None


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="Linux and macOS")
def test_a_stream_can_keep_little_unsent_in_the_kernel():
    # Else a slow but steady reader of a stream waits past send_timeout_seconds on one
    # send (tests/e2e/test_ws_streams.py, the slow reader).
    class Transport:
        def __init__(self, sock):
            self.sock = sock

        def get_extra_info(self, name):
            return self.sock if name == "socket" else None

    with socket.socket() as tcp:
        before = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
        websocket._limit_unsent(Transport(tcp))
        after = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
    assert before != websocket._UNSENT_BYTES and after == websocket._UNSENT_BYTES
    websocket._limit_unsent(Transport(None))  # no socket: nothing to do


class Transport:
    """What the protocol writes, and whether it has stopped reading."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.paused = False
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


def test_reading_pauses_only_while_the_app_has_much_untaken():
    import asyncio

    import uvicorn
    from uvicorn.server import ServerState

    async def scenario() -> None:
        accepted = asyncio.Event()

        async def app(scope, receive, send):
            await receive()
            await send({"type": "websocket.accept"})
            accepted.set()
            await asyncio.sleep(3600)

        config = uvicorn.Config(app, ws_max_size=1 << 20, lifespan="off", log_level="error")
        config.load()
        protocol = websocket.WebSocketProtocol(config=config, server_state=ServerState(),
                                               app_state={})
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /ws/x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        await asyncio.wait_for(accepted.wait(), 5)
        assert transport.written.startswith(b"HTTP/1.1 101")
        small = Frame(Opcode.TEXT, b'{"m": 1}').serialize(mask=True)
        # One frame at a time, as uvicorn would not: reading goes on.
        for count in range(1, websocket._INBOX_FRAMES):
            protocol.data_received(small)
            assert not transport.paused, count
        protocol.data_received(small)  # the app has _INBOX_FRAMES untaken: stop reading
        assert transport.paused
        for _ in range(websocket._INBOX_FRAMES - 1):
            await protocol.receive()
            assert transport.paused  # until the app has taken everything
        assert (await protocol.receive())["text"] == '{"m": 1}'
        assert not transport.paused
        # By bytes too: one large message is enough.
        big = Frame(Opcode.TEXT, b"x" * websocket._INBOX_BYTES).serialize(mask=True)
        protocol.data_received(big)
        assert transport.paused
        assert len((await protocol.receive())["text"]) == websocket._INBOX_BYTES
        assert not transport.paused
        for task in protocol.tasks:
            task.cancel()

    asyncio.run(scenario())
