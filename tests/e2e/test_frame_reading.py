"""How the server reads a client's frames (runtime/server/websocket.py), however the bytes
arrive: many frames in one read, one frame over many reads, control frames and fragments
among data frames, and the frames it must refuse, each with its close code."""

from __future__ import annotations

import json
import os
import struct
import time

import pytest
from raw_ws import OP_CLOSE, OP_PING, OP_TEXT, RawWebSocket, close_code

OP_CONT, OP_BINARY, OP_PONG = 0x0, 0x2, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
          masked: bool = True) -> bytes:
    """A client frame as the test wants it, valid or not."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, (0x80 if masked else 0) | size)
    elif size < 65536:
        head = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def echo(message: str) -> bytes:
    return json.dumps({"message": message, "client_id": "raw"}).encode()


def answers(ws: RawWebSocket, count: int, timeout: float = 10) -> list[tuple[int, bytes]]:
    got = []
    for opcode, payload in ws.frames(timeout):
        got.append((opcode, payload))
        if len(got) == count:
            break
    return got


def echoed(payload: bytes) -> str:
    return json.loads(payload)["data"]["reports"][0]["echo"]


def opened(server) -> RawWebSocket:
    ws = RawWebSocket(server.port, "/ws/EchoMessage")
    assert ws.status == 101
    return ws


def sized(index: int, payload_bytes: int) -> str:
    """A message whose frame payload is exactly `payload_bytes` long."""
    return str(index % 10) * (payload_bytes - len(echo("")))


# Frame payloads on either side of each length encoding, up to max_message_bytes (65536).
@pytest.mark.parametrize("sizes", [[40] * 50, [125, 126, 127, 60000, 40], [65535, 65536, 40]])
def test_many_frames_in_one_write_are_all_answered_in_order(server, sizes):
    ws = opened(server)
    texts = [sized(i, size) for i, size in enumerate(sizes)]
    ws.sock.sendall(b"".join(frame(OP_TEXT, echo(t)) for t in texts))
    assert [echoed(p) for _, p in answers(ws, len(texts))] == texts
    ws.close()


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_a_frame_split_over_many_writes_is_answered_once_whole(server, step):
    ws = opened(server)
    data = frame(OP_TEXT, echo("ä" * 300)) + frame(OP_TEXT, echo("second"))
    for i in range(0, len(data), step):
        ws.sock.sendall(data[i:i + step])
        if step < 10 and i % 50 == 0:
            time.sleep(0.001)  # separate reads on the server, not one coalesced chunk
    assert [echoed(p) for _, p in answers(ws, 2)] == ["ä" * 300, "second"]
    ws.close()


def test_a_ping_between_data_frames_is_ponged_in_its_place(server):
    ws = opened(server)
    ws.sock.sendall(frame(OP_TEXT, echo("a")) + frame(OP_PING, b"ping!") + frame(OP_TEXT, echo("b")))
    got = answers(ws, 3)
    assert (OP_PONG, b"ping!") in got
    assert [echoed(p) for op, p in got if op == OP_TEXT] == ["a", "b"]
    ws.close()


def test_an_unsolicited_pong_is_absorbed(server):
    ws = opened(server)
    ws.sock.sendall(frame(OP_PONG, b"x") + frame(OP_TEXT, echo("after")))
    assert [echoed(p) for _, p in answers(ws, 1)] == ["after"]
    ws.close()


def test_a_fragmented_message_is_one_message(server):
    ws = opened(server)
    whole = echo("frag" * 10)
    parts = [whole[:5], whole[5:20], whole[20:]]
    ws.sock.sendall(frame(OP_TEXT, parts[0], fin=False) + frame(OP_PING, b"mid")
                    + frame(OP_CONT, parts[1], fin=False) + frame(OP_CONT, parts[2])
                    + frame(OP_TEXT, echo("next")))
    got = answers(ws, 3)
    assert [echoed(p) for op, p in got if op == OP_TEXT] == ["frag" * 10, "next"]
    ws.close()


def test_a_binary_frame_is_read_like_a_text_frame(server):
    ws = opened(server)
    ws.sock.sendall(frame(OP_BINARY, echo("bin")))
    assert [echoed(p) for _, p in answers(ws, 1)] == ["bin"]
    ws.close()


def closed_with(ws: RawWebSocket) -> int | None:
    for opcode, payload in ws.frames(10):
        if opcode == OP_CLOSE:
            return close_code(payload)
    return None


@pytest.mark.parametrize("bad, code", [
    (frame(OP_TEXT, echo("plain"), masked=False), 1002),   # a client must mask
    (frame(OP_TEXT, echo("rsv"), rsv=0x40), 1002),          # no extension was agreed
    (frame(0x3, b"{}"), 1002),                              # a reserved opcode
    (frame(OP_CONT, b"{}"), 1002),                          # a continuation of nothing
    (frame(OP_TEXT, b'{"message": "caf\xc3"}'), 1007),      # text that is not UTF-8
    (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002),  # a new message mid-message
])
def test_a_frame_the_protocol_forbids_closes_with_its_code(server, bad, code):
    ws = opened(server)
    ws.sock.sendall(frame(OP_TEXT, echo("before")))
    assert echoed(answers(ws, 1)[0][1]) == "before"
    ws.sock.sendall(bad)
    assert closed_with(ws) == code
    ws.close()


@pytest.mark.parametrize("split", [False, True])
def test_invalid_utf8_split_across_reads_still_closes_with_1007(server, split):
    ws = opened(server)
    data = frame(OP_TEXT, b'{"message": "\xff\xfe"}')
    if split:
        ws.sock.sendall(data[:5])
        time.sleep(0.05)
        ws.sock.sendall(data[5:])
    else:
        ws.sock.sendall(data)
    assert closed_with(ws) == 1007
    ws.close()


def test_a_head_announcing_too_much_closes_with_1009_before_the_payload(server):
    ws = opened(server)
    ws.send_header(OP_TEXT, 64 * 1024 * 1024)  # 64 MiB announced, nothing sent
    assert closed_with(ws) == 1009
    ws.close()
