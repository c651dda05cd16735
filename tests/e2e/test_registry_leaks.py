"""No leaks (issue 3, item 7): after 1,000 connect/disconnect cycles the registry is empty."""

from __future__ import annotations

import asyncio
import json

from e2e_support import SECRET, run
from websockets.asyncio.client import connect

from jacc_runtime.server.auth import TokenService

CYCLES = 1000
AT_ONCE = 50


def test_a_thousand_connect_disconnect_cycles_leave_the_registry_empty(server):
    token = TokenService(SECRET).issue("leaky")

    async def cycle(n: int) -> None:
        kind = n % 5
        if kind == 0:  # a request, then a clean close
            async with connect(server.ws("/ws/EchoMessage")) as ws:
                await ws.send(json.dumps({"message": str(n)}))
                await ws.recv()
        elif kind == 1:  # connect and leave at once
            async with connect(server.ws("/ws/ChatRoom")):
                pass
        elif kind == 2:  # drop the TCP connection without a close frame
            ws = await connect(server.ws("/ws/EchoMessage"))
            await ws.send(json.dumps({"message": str(n)}))
            ws.transport.abort()
        elif kind == 3:  # refused by authentication: the server closes
            async with connect(server.ws("/ws/SecureChat?token=bad")) as ws:
                await ws.recv()
                await ws.wait_closed()
        else:  # authenticated, with a request still running when the client leaves
            ws = await connect(server.ws(f"/ws/TeamChat?token={token}"))
            await ws.send(json.dumps({"message": str(n)}))
            await ws.close()

    async def scenario():
        for start in range(0, CYCLES, AT_ONCE):
            await asyncio.gather(*(cycle(n) for n in range(start, start + AT_ONCE)))

    run(scenario())
    health = server.wait_connections(0, timeout=10)
    assert health["connections"] == 0, health
    assert health["by_walker"] == {}
    assert "Traceback" not in server.output()
