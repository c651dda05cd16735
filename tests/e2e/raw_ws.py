"""A WebSocket client on a bare socket, for peers no real client would be.

It completes the opening handshake and then does only what the test says: it
never answers a ping by itself, and it can send a frame header that announces
more data than it will ever send.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

OP_TEXT, OP_CLOSE, OP_PING = 0x1, 0x8, 0x9


class RawWebSocket:
    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            response += chunk
        head, _, self._buffer = response.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.opened_at = time.monotonic()

    def send_header(self, opcode: int, length: int) -> None:
        """A masked frame header announcing `length` bytes of payload (none sent)."""
        self.send_header_bytes(opcode, length, os.urandom(4))

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """One whole masked frame, whatever its payload (not UTF-8 text, say)."""
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.send_header_bytes(opcode, len(payload), mask)
        self.sock.sendall(masked)

    def send_header_bytes(self, opcode: int, length: int, mask: bytes) -> None:
        if length < 126:
            size = struct.pack("!B", 0x80 | length)
        elif length < 1 << 16:
            size = struct.pack("!BH", 0x80 | 126, length)
        else:
            size = struct.pack("!BQ", 0x80 | 127, length)
        self.sock.sendall(struct.pack("!B", 0x80 | opcode) + size + mask)

    def frames(self, timeout: float):
        """Yield (opcode, payload) of the server's frames until it closes the TCP connection.

        Stops at EOF (or a reset); raises TimeoutError if nothing at all arrives
        for `timeout` seconds.
        """
        self.sock.settimeout(timeout)
        while True:
            frame = self._parse()
            if frame is not None:
                yield frame
                continue
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            except socket.timeout:
                raise TimeoutError("no data from the server") from None
            if not chunk:
                return
            self._buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        data = self._buffer
        if len(data) < 2:
            return None
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if length == 126:
            if len(data) < 4:
                return None
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            if len(data) < 10:
                return None
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        if len(data) < offset + length:
            return None
        self._buffer = data[offset + length:]
        return opcode, data[offset:offset + length]

    def close(self) -> None:
        self.sock.close()


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
