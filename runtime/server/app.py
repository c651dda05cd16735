"""The ASGI application that serves one program's walkers (SPEC §5–§8).

    app = JaccApp([EchoMessage, ChatRoom], tokens=TokenService(secret), accounts=store)
    uvicorn.run(app)

`JaccApp` owns everything a running server has: the walker bindings, the
connection registry, the broadcast backplane, the token service, the account
store and the config. Nothing lives in module globals, so a test can build
several apps in one process.

Routes:

    ws   /ws/{Name}, /ws/walker/{Name}   WebSocket walkers (session.py)
    POST /walker/{Name}                  other walkers; JSON body = fields
    GET  /openapi.json                   the HTTP routes only
    POST /user/register | login | refresh-token
    GET  /healthz                        liveness, with connection counts
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Mapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from .accounts import AccountError, AccountStore
from .auth import AuthError, Identity, TokenService
from .ws.backplane import Backplane, MemoryBackplane
from .config import AuthConfig, Config, ServerConfig, WebSocketConfig
from .drain import SHUTTING_DOWN, Drain
from .loopwatch import LoopMonitor
from .ws.connections import ConnectionRegistry
from .openapi import openapi_document
from .origins import origin_allowed
from .protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    EXECUTION_TIMEOUT,
    INTERNAL_ERROR,
    INVALID_PAYLOAD,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    ORIGIN_NOT_ALLOWED,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    ProtocolError,
    WalkerBinding,
    decode_object,
    encode,
    error_frame,
    run_walker,
    success_frame,
)
from .threads import WalkerPool
from .ws.session import SessionContext, WebSocketSession
from ..walker import Walker

logger = logging.getLogger("jacc.app")

__all__ = ["JaccApp", "default_config"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def default_config(app_dir: Path | None = None) -> Config:
    """Every default of SPEC §9, for an app built without `load_config`."""
    return Config(
        websocket=WebSocketConfig(),
        auth=AuthConfig(),
        server=ServerConfig(),
        app_dir=app_dir or Path.cwd(),
    )


class JaccApp:
    """An ASGI app serving `walkers` (walker classes, or a mapping name → class).

    `tokens` verifies and issues JWTs; `accounts` enables the /user routes
    (without it they answer 404); `backplane` defaults to a `MemoryBackplane`
    of the app's own. Share one between two apps and they broadcast to each
    other's clients, like two workers.
    """

    def __init__(
        self,
        walkers: Iterable[type[Walker]] | Mapping[str, type[Walker]],
        *,
        tokens: TokenService,
        config: Config | None = None,
        accounts: AccountStore | None = None,
        backplane: Backplane | None = None,
        title: str = "jacc",
    ) -> None:
        self.config = config or default_config()
        self.tokens = tokens
        self.accounts = accounts
        self.registry = ConnectionRegistry()
        self.backplane = backplane or MemoryBackplane()
        self.backplane.subscribe(self.registry.deliver)
        self.title = title
        self._version = _version()
        self.bindings: dict[str, WalkerBinding] = {}
        self._extra_routes: list[BaseRoute] = []
        self._closing = False
        # Non-async walkers run here, off the event loop (threads.py).
        self.threads = WalkerPool()
        # Walker runs in progress, and the drain of a graceful shutdown (drain.py).
        self.drain = Drain()
        # `loop_monitor.incidents`: how often an async walker blocked the loop (loopwatch.py).
        self.loop_monitor = LoopMonitor()
        self._session_context = _session_context(self)
        self._starlette = Starlette(
            routes=[],
            exception_handlers={HTTPException: _http_error, Exception: _internal_error},
            lifespan=self._lifespan,
        )
        self.set_walkers(walkers)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.drain.active:
            # New requests during a drain: a load balancer (or a client) goes elsewhere.
            response = _error_response(ProtocolError(SERVICE_UNAVAILABLE, SHUTTING_DOWN))
            await response(scope, receive, send)
            return
        await self._starlette(scope, receive, send)

    def set_walkers(
        self, walkers: Iterable[type[Walker]] | Mapping[str, type[Walker]]
    ) -> dict[str, str]:
        """Serve these walkers from now on; open connections run the new code on their next frame.

        The open connections of a walker that is gone, is no longer a WebSocket
        walker, or changed between public and private are closed with 1012 at
        once, so that their clients reconnect under the new rules. Returns those
        walkers' names, each with the close reason.
        """
        classes = walkers.values() if isinstance(walkers, Mapping) else walkers
        old = self.bindings
        self.bindings = {cls.__jacc_spec__.name: WalkerBinding(cls) for cls in classes}
        self._starlette.router.routes = self._routes()
        stale = _stale_walkers(old, self.bindings)
        if stale:
            for connection in self.registry.connections():
                reason = stale.get(connection.walker)
                if reason is not None:
                    connection.close(CLOSE_SERVICE_RESTART, reason)
        return stale

    def add_route(self, route: BaseRoute) -> None:
        """Serve `route` too, ahead of the walkers' routes and across `set_walkers`."""
        self._extra_routes.append(route)
        self._starlette.router.routes = self._routes()

    def http_routes(self) -> list[tuple[str, str, WalkerBinding]]:
        """(method, path, binding) of every route of a non-WebSocket walker."""
        routes = []
        for name, binding in self.bindings.items():
            spec = binding.spec
            if spec.is_websocket:
                continue
            routes.append(("POST", f"/walker/{name}", binding))
            if spec.method != "POST":
                routes.append((spec.method, f"/walker/{name}", binding))
            if spec.path:
                routes.append((spec.method, _absolute(spec.path), binding))
        return routes

    async def drain_walkers(self, seconds: float) -> int:
        """Answer 503 to new requests and sockets, and wait up to `seconds` for the walker
        runs in progress to be answered; return how many were not (docs/security.md#shutdown).
        """
        return await self.drain.run(seconds)

    async def close_connections(
        self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down", timeout: float = 5.0
    ) -> None:
        """Refuse new sockets, close the open ones with `code`, and wait for them to go."""
        self._closing = True
        await self.registry.close_all(code, reason, timeout)

    # --- routing -------------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            *self._extra_routes,
            WebSocketRoute("/ws/{name}", _WalkerSocket(self)),
            WebSocketRoute("/ws/walker/{name}", _WalkerSocket(self)),
            # Any other upgrade gets the same 404, not Starlette's default 403.
            WebSocketRoute("/{path:path}", _WalkerSocket(self, known=False)),
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/openapi.json", self._openapi, methods=["GET"]),
            Route("/user/register", self._register, methods=["POST"]),
            Route("/user/login", self._login, methods=["POST"]),
            Route("/user/refresh-token", self._refresh_token, methods=["POST"]),
            Route("/walker/{name}", self._walker_endpoint, methods=_ALL_METHODS),
        ]
        for method, path, binding in self.http_routes():
            if not path.startswith("/walker/"):
                routes.append(Route(path, _CustomRoute(self, binding.name), methods=[method]))
        return routes

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.backplane.start()
        self.loop_monitor.start()
        try:
            yield
        finally:
            await self.close_connections()
            await self.backplane.stop()
            self.loop_monitor.stop()
            self.threads.stop()

    # --- HTTP walkers --------------------------------------------------------------

    async def _walker_endpoint(self, request: Request) -> Response:
        return await self.run_http_walker(request, request.path_params["name"])

    async def run_http_walker(self, request: Request, name: str) -> Response:
        """Run the HTTP walker `name` for `request` and answer with the JSON envelope."""
        binding = self.bindings.get(name)
        try:
            if binding is None or binding.spec.is_websocket:
                raise ProtocolError(NOT_FOUND, f"no HTTP walker named `{name}`")
            method = request.method
            if method != "POST" and method != binding.spec.method:
                raise ProtocolError(
                    METHOD_NOT_ALLOWED, f"walker `{name}` takes POST or {binding.spec.method}"
                )
            if not binding.spec.public:
                self._bearer_identity(request)
            payload = await _fields_of(request, binding)
            binding.check(payload)
            reports = await self._run_timed(binding, payload)
            return _json_response(success_frame(reports))
        except ProtocolError as error:
            return _error_response(error)

    async def _run_timed(self, binding: WalkerBinding, payload: dict) -> list:
        # The same limit as on a WebSocket; a WebSocket session has a cheaper watchdog of its own.
        seconds = self.config.websocket.walker_timeout_seconds
        drain = self.drain
        try:
            async with asyncio.timeout(seconds) as limit:
                drain.enter(limit)  # a drain brings `limit` forward to its own end
                try:
                    return await run_walker(binding, payload, self.config.server.dev, self.threads)
                finally:
                    drain.leave(limit)
        except TimeoutError:  # run_walker turns the walker's own exceptions into ProtocolError
            if drain.cut_off(limit):
                raise ProtocolError(
                    SERVICE_UNAVAILABLE,
                    f"{SHUTTING_DOWN}: walker `{binding.name}` was cut off at the end of the drain",
                    reason="drain_seconds",
                ) from None
            logger.warning("walker %s ran past walker_timeout_seconds (%g s) and was cancelled",
                           binding.name, seconds)
            raise ProtocolError(
                EXECUTION_TIMEOUT,
                f"walker `{binding.name}` ran past walker_timeout_seconds ({seconds:g} s) "
                "and was cancelled",
                reason="walker_timeout_seconds",
            ) from None

    def _bearer_identity(self, request: Request) -> Identity:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise AuthError("missing", "expected `Authorization: Bearer <token>`")
            return self.tokens.verify(token.strip())
        except AuthError as error:
            raise ProtocolError(UNAUTHORIZED, error.message, reason=error.reason) from None

    # --- accounts ------------------------------------------------------------------

    async def _register(self, request: Request) -> Response:
        try:
            body = decode_object(await request.body())
            username = _username(_only_identity(body.get("identities")))
            password = _password(body.get("credential"))
            user_id = await self._account_call("register", username, password)
        except ProtocolError as error:
            return _error_response(error)
        data = {"user_id": user_id, "message": "User registered successfully"}
        return _json_response(encode({"ok": True, "data": data}), status=201)

    async def _login(self, request: Request) -> Response:
        try:
            body = decode_object(await request.body())
            username = _username(body.get("identity"))
            password = _password(body.get("credential"))
            user_id = await self._account_call("authenticate", username, password)
        except ProtocolError as error:
            return _error_response(error)
        token = self.tokens.issue(username, user_id=user_id)
        return _json_response(encode({"ok": True, "data": {"user_id": user_id, "token": token}}))

    async def _refresh_token(self, request: Request) -> Response:
        try:
            body = decode_object(await request.body())
            token = body.get("token")
            if not isinstance(token, str):
                raise _malformed("`token` must be a string")
            try:
                identity = self.tokens.verify(token)
            except AuthError as error:
                raise ProtocolError(UNAUTHORIZED, error.message, reason=error.reason) from None
        except ProtocolError as error:
            return _error_response(error)
        fresh = self.tokens.issue(identity.user, user_id=identity.user_id)
        data = {"user_id": identity.user_id, "token": fresh}
        return _json_response(encode({"ok": True, "data": data}))

    async def _account_call(self, action: str, username: str, password: str) -> str:
        if self.accounts is None:
            raise ProtocolError(NOT_FOUND, "accounts are not enabled on this server")
        try:
            # scrypt takes tens of milliseconds: keep it off the event loop.
            return await run_in_threadpool(getattr(self.accounts, action), username, password)
        except AccountError as error:
            raise ProtocolError(error.code, error.message, status=error.status) from None
        except ValueError as error:
            raise _malformed(str(error)) from None

    # --- the rest ------------------------------------------------------------------

    async def _healthz(self, request: Request) -> Response:
        data = {
            "status": "ok",
            "connections": len(self.registry),
            "by_walker": self.registry.counts(),
        }
        return _json_response(encode({"ok": True, "data": data}))

    async def _openapi(self, request: Request) -> Response:
        document = openapi_document(
            self.http_routes(),
            title=self.title,
            version=self._version,
            accounts=self.accounts is not None,
        )
        return _json_response(encode(document))


class _WalkerSocket:
    """The ASGI endpoint of the WebSocket routes: a 404 before any 101 for what is not served."""

    def __init__(self, app: JaccApp, known: bool = True) -> None:
        self._app = app
        self._known = known

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        app = self._app
        origin, host = _origin_and_host(scope)
        if not origin_allowed(origin, host, app.config.websocket.allowed_origins):
            # Checked first, so that a foreign page learns nothing, not even which walkers exist.
            what = f"origin {origin} is not allowed (websocket.allowed_origins)"
            await _deny(scope, send, 403, error_frame(ORIGIN_NOT_ALLOWED, what))
            return
        name = scope["path_params"].get("name") if self._known else None
        binding = app.bindings.get(name) if name is not None else None
        if binding is None or not binding.spec.is_websocket:
            what = f"no WebSocket walker named `{name}`" if name else "no WebSocket route here"
            await _deny(scope, send, 404, error_frame(NOT_FOUND, what))
            return
        if app._closing or app.drain.active:
            await _deny(scope, send, 503, error_frame(SERVICE_UNAVAILABLE, SHUTTING_DOWN))
            return
        await WebSocketSession(app._session_context, name, scope, receive, send).run()


class _CustomRoute:
    """An HTTP walker served at the `path` of its `@restspec`."""

    def __init__(self, app: JaccApp, name: str) -> None:
        self._app = app
        self._name = name

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        response = await self._app.run_http_walker(request, self._name)
        await response(scope, receive, send)


def _session_context(app: JaccApp) -> SessionContext:
    """The part of `app` a WebSocket session uses."""

    def binding(name: str) -> WalkerBinding | None:
        # Through `app`, not a saved dict: a dev reload replaces `app.bindings`.
        return app.bindings.get(name)

    return SessionContext(
        limits=app.config.websocket,
        tokens=app.tokens,
        registry=app.registry,
        binding=binding,
        publish=app.backplane.publish,
        dev=app.config.server.dev,
        threads=app.threads,
        drain=app.drain,
    )


def _stale_walkers(
    old: Mapping[str, WalkerBinding], new: Mapping[str, WalkerBinding]
) -> dict[str, str]:
    """The WebSocket walkers of `old` whose open connections cannot go on under `new`."""
    stale = {}
    for name, before in old.items():
        if not before.spec.is_websocket:
            continue
        after = new.get(name)
        if after is None:
            stale[name] = "walker removed"
        elif not after.spec.is_websocket or after.spec.public != before.spec.public:
            # A session keeps the rules it was admitted under: reconnect under the new ones.
            stale[name] = "walker changed"
    return stale


def _origin_and_host(scope: dict) -> tuple[str | None, str | None]:
    origin = host = None
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"host":
            host = value.decode("latin-1")
    return origin, host


async def _deny(scope: dict, send: Any, status: int, body: str) -> None:
    """Refuse an upgrade with an HTTP response, where the server supports it."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await _json_response(body, status=status)(scope, _no_receive, send)
    else:
        # Without the extension the best available is a close before accept (HTTP 403).
        await send({"type": "websocket.close", "code": 1008, "reason": ""})


async def _no_receive() -> dict:  # pragma: no cover - a denial response never reads
    return {"type": "websocket.disconnect", "code": 1000}


# --- requests and responses ------------------------------------------------------------


async def _fields_of(request: Request, binding: WalkerBinding) -> dict:
    if request.method in _BODY_METHODS:
        body = await request.body()
        # An empty body is an empty object: a walker without required fields needs nothing.
        return decode_object(body) if body.strip() else {}
    return {key: _query_value(binding, key, value) for key, value in request.query_params.items()}


def _query_value(binding: WalkerBinding, key: str, text: str) -> object:
    # Query parameters are text; a field declared as anything but `str` gets its JSON reading.
    field = next((f for f in binding.spec.fields if f.name == key), None)
    if field is None or field.type.strip() == "str":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_response(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/json")


def _error_response(error: ProtocolError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return Response(
        error.frame(), status_code=error.status, media_type="application/json", headers=headers
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}.get(exc.status_code, INVALID_PAYLOAD)
    return _error_response(ProtocolError(code, str(exc.detail), status=exc.status_code))


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(ProtocolError(INTERNAL_ERROR, "internal server error"))


def _malformed(message: str) -> ProtocolError:
    return ProtocolError(INVALID_PAYLOAD, message)


def _only_identity(identities: object) -> object:
    if not isinstance(identities, list) or not identities:
        raise _malformed("`identities` must be a non-empty list")
    for identity in identities:
        if isinstance(identity, dict) and identity.get("type") == "username":
            return identity
    raise _malformed('`identities` needs an entry {"type": "username", "value": ...}')


def _username(identity: object) -> str:
    return _typed_value(identity, "username", "value", "an identity", "the username")


def _password(credential: object) -> str:
    return _typed_value(credential, "password", "password", "a credential", "the password")


def _typed_value(item: object, kind: str, key: str, what: str, named: str) -> str:
    """The string under `key` of a `{"type": kind, key: ...}` object of the account API."""
    if not isinstance(item, dict) or item.get("type") != kind:
        raise _malformed(f'expected {what} {{"type": "{kind}", "{key}": ...}}')
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise _malformed(f"{named} must be a non-empty string")
    return value


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _version() -> str:
    try:
        return importlib.metadata.version("jacc")
    except importlib.metadata.PackageNotFoundError:
        return "0"
