"""An HTTP client on a bare socket, for requests no real client would send.

It writes exactly the bytes the test gives it (half a request line, a head that
never ends, a body that stops), and reads whatever the server answers until the
server closes the connection.
"""

from __future__ import annotations

import json
import socket
import time


class RawHttp:
    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(address, 0))
        self.opened_at = time.monotonic()

    def send(self, data: bytes | str) -> bool:
        """Send `data`; False if the server has closed the connection meanwhile."""
        try:
            self.sock.sendall(data.encode() if isinstance(data, str) else data)
        except OSError:  # a reset or broken pipe: the server closed on us
            return False
        return True

    def send_until_refused(self, chunk: bytes, most: int) -> int:
        """Send `chunk` again and again, up to `most` bytes; return how many went out."""
        sent = 0
        while sent < most and self.send(chunk):
            sent += len(chunk)
        return sent

    def read_all(self, timeout: float) -> bytes:
        """Everything the server sends until it closes; TimeoutError if it stays open."""
        self.sock.settimeout(timeout)
        data = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            except TimeoutError:
                raise TimeoutError(f"still open after {timeout} s; got {data[:200]!r}") from None
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one HTTP/1.1 response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def error_of(data: bytes) -> tuple[int, dict]:
    """The status and the `error` object of a JSON error response."""
    status, headers, body = parse_response(data)
    assert headers["content-type"] == "application/json", headers
    envelope = json.loads(body)
    assert envelope["ok"] is False
    return status, envelope["error"]


def request_head(method: str, path: str, port: int, **headers: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"
