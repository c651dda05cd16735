"""The baseline for bench/ws.py: the bare Starlette + uvicorn stack under jacc.

The same two routes as bench/app.jac, written directly against Starlette with no
validation, auth or queues: an upper bound for what jacc's server could reach.

    python bench/bare_app.py PORT
"""

from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

listeners: set[WebSocket] = set()


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            report = {"echo": message["message"], "client_id": message.get("client_id", "anonymous")}
            await websocket.send_text(json.dumps({"ok": True, "data": {"reports": [report]}}))
    except WebSocketDisconnect:
        pass


async def broadcast(websocket: WebSocket) -> None:
    await websocket.accept()
    listeners.add(websocket)
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            report = {"type": "message", "sender": message.get("sender", "anonymous"),
                      "content": message["message"]}
            frame = json.dumps({"ok": True, "data": {"reports": [report]}})
            for listener in list(listeners):
                await listener.send_text(frame)
    except WebSocketDisconnect:
        pass
    finally:
        listeners.discard(websocket)


app = Starlette(routes=[WebSocketRoute("/ws/EchoMessage", echo),
                        WebSocketRoute("/ws/ChatRoom", broadcast)])

if __name__ == "__main__":
    # Compression off, as in `jacc serve`: the comparison is like for like.
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                ws_per_message_deflate=False)
