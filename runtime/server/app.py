"""The ASGI application that serves one program's walkers and functions (docs/protocol.md).

    app = JaccApp([EchoMessage, ChatRoom, ws_echo], tokens=TokenService(secret), accounts=store)
    uvicorn.run(app)

`JaccApp` owns everything a running server has: the bindings of the walkers and
served functions (its *targets*, program.py), the connection registry, the
broadcast backplane, the token service, the account store and the config.
Nothing lives in module globals, so a test can build several apps in one process.

Routes:

    ws   /ws/{Name}, /ws/walker/{Name}   WebSocket walkers (session.py)
    ws   /ws/function/{name}             WebSocket functions (session.py, ws/streams.py)
    POST /walker/{Name}                  other walkers; JSON body = fields
    POST /function/{name}                other served functions; JSON body = parameters
    GET  /openapi.json                   the HTTP routes only
    POST /user/register | login | refresh-token
    GET  /healthz                        liveness, with connection counts
    GET  /metrics                        Prometheus metrics (metrics.py), unless turned off
    GET  /asyncapi.json, /__jacc/...     the browser's routes (browser.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Mapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute

from .accounts import Account, AccountError, AccountStore, InvalidCredentials, login_key
from .functions import FunctionBinding, bind, is_stream, result_frame
from .auth import AuthError, Identity, TokenService
from .browser import browser_routes
from .config import AuthConfig, Config, ServerConfig, WebSocketConfig
from .http import BodyLimit
from .throttle import LoginLimits, LoginThrottle, Throttled
from .ws.backplane import Backplane, MemoryBackplane
from .drain import SHUTTING_DOWN, Drain
from .loopwatch import LoopMonitor
from .metrics import ServerState, metrics_for
from .ws.connections import ConnectionRegistry
from .openapi import openapi_document
from .origins import origin_allowed
from .protocol import (
    CAPACITY,
    CLOSE_CAPACITY,
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    EXECUTION_ERROR,
    EXECUTION_TIMEOUT,
    INTERNAL_ERROR,
    INVALID_PAYLOAD,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    ORIGIN_NOT_ALLOWED,
    RATE_LIMITED,
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
from .program import Target, targets_of
from .threads import WalkerPool
from .ws.session import SessionContext, WebSocketSession

logger = logging.getLogger("jacc.app")

__all__ = ["JaccApp", "default_config"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def default_config(app_dir: Path | None = None) -> Config:
    """Every default of docs/configuration.md, for an app built without `load_config`."""
    return Config(
        websocket=WebSocketConfig(),
        auth=AuthConfig(),
        server=ServerConfig(),
        app_dir=app_dir or Path.cwd(),
    )


class JaccApp:
    """An ASGI app serving `walkers`: walker classes and served functions (a list, a
    `Program`, or a mapping name → target).

    `tokens` verifies and issues JWTs; `accounts` enables the /user routes
    (without it they answer 404) and is then also where tokens are checked
    against accounts and rotation (`self.tokens` is `tokens` bound to it);
    `backplane` defaults to a `MemoryBackplane` of the app's own. Share one
    between two apps and they broadcast to each other's clients, like two workers.
    """

    def __init__(
        self,
        walkers: Iterable[Target] | Mapping[str, Target],
        *,
        tokens: TokenService,
        config: Config | None = None,
        accounts: AccountStore | None = None,
        backplane: Backplane | None = None,
        title: str = "jacc",
    ) -> None:
        self.config = config or default_config()
        auth = self.config.auth
        self.tokens = tokens if accounts is None else tokens.bound(
            accounts, auth.refresh_grace_seconds)
        self.accounts = accounts
        self.logins = LoginThrottle(_login_limits(auth))
        self._hashing: ThreadPoolExecutor | None = None
        self.registry = ConnectionRegistry()
        # `loop_monitor.incidents`: how often an async walker blocked the loop (loopwatch.py).
        self.loop_monitor = LoopMonitor()
        # GET /metrics (metrics.py); the instrumented calls below are no-ops when it is off.
        self.metrics = metrics_for(self.config.server.metrics, self._server_state)
        self.backplane = backplane or MemoryBackplane(self.config.websocket.history)
        self.backplane.subscribe(self.metrics.timed_deliver(self.registry.deliver))
        self.backplane.events = self.metrics.backplane_events()
        self.caps = self.backplane.caps(self.registry, self.config.websocket)
        self.title = title
        self._version = _version()
        self.bindings: dict[str, WalkerBinding] = {}
        self._extra_routes: list[BaseRoute] = []
        self._closing = False
        # Non-async walkers run here, off the event loop (threads.py).
        self.threads = WalkerPool()
        # Walker runs in progress, and the drain of a graceful shutdown (drain.py).
        self.drain = Drain()
        self._session_context = _session_context(self)
        self._starlette = Starlette(
            routes=[],
            exception_handlers={
                HTTPException: _http_error,
                ProtocolError: _protocol_error,
                ClientDisconnect: _client_gone,
                Exception: _internal_error,
            },
            lifespan=self._lifespan,
        )
        self._asgi = BodyLimit(self._starlette, self.config.server.max_body_bytes)
        self._entry = self.metrics.http(self._serve)
        self.set_walkers(walkers)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            # Straight to the route's endpoint, past Starlette's middleware and router:
            # their coroutines would stay suspended, holding memory, for the socket's whole
            # life. (The catch-all route of `_routes` matches any upgrade.)
            for route in self._socket_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    await route.app(scope, receive, send)
                    return
        await self._entry(scope, receive, send)

    async def _serve(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.drain.active:
            # New requests during a drain: a load balancer (or a client) goes elsewhere.
            response = _error_response(ProtocolError(SERVICE_UNAVAILABLE, SHUTTING_DOWN))
            await response(scope, receive, send)
            return
        await self._asgi(scope, receive, send)

    def set_walkers(
        self, walkers: Iterable[Target] | Mapping[str, Target]
    ) -> dict[str, str]:
        """Serve these walkers and functions from now on; open connections run the new code
        on their next frame.

        The open connections of a target that is gone, is no longer served over
        WebSocket, changed between walker and function, or between public and
        private, are closed with 1012 at once, so that their clients reconnect under
        the new rules. Returns those targets' names, each with the close reason.
        """
        old = self.bindings
        self.bindings = {t.__jacc_spec__.name: bind(t) for t in targets_of(walkers)}
        self.backplane.watch(name for name, binding in self.bindings.items()
                             if binding.spec.broadcast)
        self._set_routes()
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
        self._set_routes()

    def _set_routes(self) -> None:
        routes = self._routes()
        self._starlette.router.routes = routes
        # The catch-all of `_routes` ends the list: every upgrade matches one of them.
        self._socket_routes = [r for r in routes if isinstance(r, WebSocketRoute)]

    def http_routes(self) -> list[tuple[str, str, WalkerBinding]]:
        """(method, path, binding) of every route of a non-WebSocket walker or function."""
        routes = []
        for name, binding in self.bindings.items():
            spec = binding.spec
            if spec.is_websocket:
                continue
            route = f"/{binding.kind}/{name}"  # /walker/{Name} or /function/{name}
            routes.append(("POST", route, binding))
            if spec.method != "POST":
                routes.append((spec.method, route, binding))
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
            WebSocketRoute("/ws/function/{name}", _WalkerSocket(self, kind="function")),
            # Any other upgrade gets the same 404, not Starlette's default 403.
            WebSocketRoute("/{path:path}", _WalkerSocket(self, known=False)),
            Route("/healthz", self._healthz, methods=["GET"]),
            *([Route("/metrics", self._metrics, methods=["GET"])] if self.metrics.enabled else []),
            Route("/openapi.json", self._openapi, methods=["GET"]),
            Route("/user/register", self._register, methods=["POST"]),
            Route("/user/login", self._login, methods=["POST"]),
            Route("/user/refresh-token", self._refresh_token, methods=["POST"]),
            # An ASGI endpoint gets every method: it knows each walker's own (405 and `Allow`).
            Route("/walker/{name}", _HttpWalker(self)),
            Route("/function/{name}", _HttpWalker(self, kind="function")),
        ]
        for method, path, binding in self.http_routes():
            if not path.startswith(f"/{binding.kind}/"):
                routes.append(Route(path, _HttpWalker(self, binding.name, binding.kind),
                                    methods=[method]))
        routes += self._browser_routes()
        return routes

    def _browser_routes(self) -> list[BaseRoute]:
        # /asyncapi.json, jacc.js, the console and the `/` redirect (browser.py, docs/client.md).
        return browser_routes(
            lambda: [binding.cls for binding in self.bindings.values()],
            title=self.title,
            version=self._version,
            console=self.config.server.console,
            root_taken=any(path == "/" for _, path, _ in self.http_routes()),
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.backplane.start()
        self.loop_monitor.start()
        self.metrics.start()
        try:
            yield
        finally:
            await self.metrics.stop()
            await self.close_connections()
            await self.caps.close()
            await self.backplane.stop()
            if self._hashing is not None:
                self._hashing.shutdown(wait=False, cancel_futures=True)
                self._hashing = None
            self.loop_monitor.stop()
            self.threads.stop()

    # --- HTTP walkers --------------------------------------------------------------

    async def run_http_walker(self, request: Request, name: str,
                              kind: str = "walker") -> Response:
        """Run the HTTP walker (or served function, `kind`) `name` for `request` and answer
        with the JSON envelope."""
        binding = self.bindings.get(name)
        try:
            if binding is None or binding.spec.is_websocket or binding.kind != kind:
                raise ProtocolError(NOT_FOUND, f"no HTTP {kind} named `{name}`")
            allowed = _walker_methods(binding)
            if request.method not in allowed:
                return _method_not_allowed(f"{kind} `{name}`", allowed, request.method)
            if not binding.spec.public:
                self._bearer_identity(request)
            payload = await _fields_of(request, binding)
            binding.check(payload)
            return _json_response(await self._run_timed(binding, payload))
        except ProtocolError as error:
            return self._refused(error)

    async def _run_timed(self, binding: WalkerBinding, payload: dict) -> str:
        """The success frame of one run: a walker's reports, or a function's result."""
        # The same limit as on a WebSocket; a WebSocket session has a cheaper watchdog of its own.
        seconds = self.config.websocket.walker_timeout_seconds
        dev = self.config.server.dev
        drain = self.drain
        try:
            async with asyncio.timeout(seconds) as limit:
                drain.enter(limit)  # a drain brings `limit` forward to its own end
                started = time.perf_counter()
                try:
                    if isinstance(binding, FunctionBinding):
                        return _http_result(binding, await binding.call(payload, dev))
                    reports = await run_walker(binding, payload, dev, self.threads)
                    return success_frame(reports, binding.name, dev)
                finally:
                    drain.leave(limit)
                    self.metrics.walker(binding.name).ran(time.perf_counter() - started)
        except TimeoutError:  # run_walker turns the walker's own exceptions into ProtocolError
            if drain.cut_off(limit):
                raise ProtocolError(
                    SERVICE_UNAVAILABLE,
                    f"{SHUTTING_DOWN}: {binding.kind} `{binding.name}` was cut off at the end "
                    "of the drain",
                    reason="drain_seconds",
                ) from None
            logger.warning("%s %s ran past walker_timeout_seconds (%g s) and was cancelled",
                           binding.kind, binding.name, seconds)
            raise ProtocolError(
                EXECUTION_TIMEOUT,
                f"{binding.kind} `{binding.name}` ran past walker_timeout_seconds ({seconds:g} s) "
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
        except AccountError as error:  # the account store cannot answer (PostgreSQL down)
            raise ProtocolError(error.code, error.message, status=error.status) from None

    # --- accounts ------------------------------------------------------------------

    async def _register(self, request: Request) -> Response:
        try:
            body = decode_object(await request.body())
            username = _username(_only_identity(body.get("identities")))
            password = _password(body.get("credential"))
            user_id = await self._hashed(self._account_store().register, username, password)
        except ProtocolError as error:
            return self._refused(error)
        data = {"user_id": user_id, "message": "User registered successfully"}
        return _json_response(encode({"ok": True, "data": data}), status=201)

    async def _login(self, request: Request) -> Response:
        try:
            body = decode_object(await request.body())
            username = _username(body.get("identity"))
            password = _password(body.get("credential"))
            account = await self._authenticate(username, password, _client_address(request.scope))
        except ProtocolError as error:
            return self._refused(error)
        except Throttled as throttled:
            self.metrics.auth_failure("throttled")
            return _throttled_response(throttled)
        # `sub` is the name as registered, whichever look-alike spelling logged in.
        token = self.tokens.issue(account.username, user_id=account.user_id)
        data = {"user_id": account.user_id, "token": token}
        return _json_response(encode({"ok": True, "data": data}))

    async def _authenticate(self, username: str, password: str, address: str) -> Account:
        """Check a password, unless the name or the address is throttled (raises Throttled)."""
        store = self._account_store()
        try:
            key = login_key(username)
        except ValueError as error:
            raise _malformed(str(error)) from None
        # Refused here, a throttled login costs no hash at all.
        attempt = self.logins.admit(key, address)
        ok: bool | None = None
        try:
            account = await self._hashed(store.authenticate, username, password)
            ok = True
        except ProtocolError as error:
            ok = False if error.code == InvalidCredentials.code else None
            raise
        finally:
            attempt.end(ok)
        return account

    async def _refresh_token(self, request: Request) -> Response:
        try:
            body = decode_object(await request.body())
            token = body.get("token")
            if not isinstance(token, str):
                raise _malformed("`token` must be a string")
            self._account_store()
            try:
                # A write to the store (the retired token id): off the event loop.
                identity, fresh = await run_in_threadpool(self.tokens.refresh, token)
            except AuthError as error:
                raise ProtocolError(UNAUTHORIZED, error.message, reason=error.reason) from None
            except AccountError as error:  # the account store cannot answer (PostgreSQL down)
                raise ProtocolError(error.code, error.message, status=error.status) from None
        except ProtocolError as error:
            return self._refused(error)
        data = {"user_id": identity.user_id, "token": fresh}
        return _json_response(encode({"ok": True, "data": data}))

    def _account_store(self) -> AccountStore:
        if self.accounts is None:
            raise ProtocolError(NOT_FOUND, "accounts are not enabled on this server")
        return self.accounts

    async def _hashed(self, call: Any, *args: str) -> Any:
        """Run an account call that hashes a password: one per core at a time, the rest queue.

        scrypt takes tens of milliseconds and 16 MiB each, so a flood of logins
        run all at once would hold one 16 MiB buffer per thread of a shared
        pool; this pool of its own bounds both, and keeps the event loop free.
        """
        if self._hashing is None:
            self._hashing = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 1, thread_name_prefix="jacc-hash")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._hashing, functools.partial(call, *args))
        except AccountError as error:
            raise ProtocolError(error.code, error.message, status=error.status) from None
        except ValueError as error:
            raise _malformed(str(error)) from None

    # --- the rest ------------------------------------------------------------------

    def _refused(self, error: ProtocolError) -> Response:
        """The error answer of an HTTP route, counted in the metrics."""
        self.metrics.error(error.code, "http", error.reason)
        return _error_response(error)

    def _server_state(self) -> ServerState:
        total, largest = self.registry.queued_bytes()
        return ServerState(total, largest, self.loop_monitor.incidents)

    async def _metrics(self, request: Request) -> Response:
        body, content_type = self.metrics.expose()
        return Response(body, media_type=content_type)

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
    """The ASGI endpoint of the WebSocket routes: a 404 before any 101 for what is not served.

    `kind` is what the route serves: `walker` (`/ws/{Name}`, `/ws/walker/{Name}`) or
    `function` (`/ws/function/{name}`)."""

    def __init__(self, app: JaccApp, known: bool = True, kind: str = "walker") -> None:
        self._app = app
        self._known = known
        self._kind = kind

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
        if binding is None or not binding.spec.is_websocket or binding.kind != self._kind:
            what = f"no WebSocket {self._kind} named `{name}`" if name else \
                "no WebSocket route here"
            await _deny(scope, send, 404, error_frame(NOT_FOUND, what))
            return
        if app._closing or app.drain.active:
            await _deny(scope, send, 503, error_frame(SERVICE_UNAVAILABLE, SHUTTING_DOWN))
            return
        address = _client_address(scope)
        limit = app.config.websocket.max_connections_per_ip
        if not app.registry.claim_address(address, limit):
            logger.info("%s - refused a WebSocket to %s: max_connections_per_ip (%d)",
                        address, name, limit)
            app.metrics.error(CAPACITY, "ws", "max_connections_per_ip")
            app.metrics.closed(CLOSE_CAPACITY, True, None)
            await _refuse_accepted(receive, send, _capacity(
                "max_connections_per_ip", limit, "this address"))
            return
        try:
            await WebSocketSession(app._session_context, name, scope, receive, send).run()
        finally:
            app.registry.release_address(address)


class _HttpWalker:
    """An HTTP walker's (or function's, `kind`) endpoint: `/walker/{name}`,
    `/function/{name}`, or the `path` of its `@restspec` (`name`)."""

    def __init__(self, app: JaccApp, name: str | None = None, kind: str = "walker") -> None:
        self._app = app
        self._name = name
        self._kind = kind

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        name = self._name or request.path_params["name"]
        response = await self._app.run_http_walker(request, name, self._kind)
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
        publish=app.metrics.timed_publish(app.backplane.publish),
        dev=app.config.server.dev,
        replay=app.backplane.replay,
        caps=app.caps,
        threads=app.threads,
        drain=app.drain,
        metrics=app.metrics,
    )


def _stale_walkers(
    old: Mapping[str, WalkerBinding], new: Mapping[str, WalkerBinding]
) -> dict[str, str]:
    """The WebSocket walkers and functions of `old` whose open connections cannot go on
    under `new`."""
    stale = {}
    for name, before in old.items():
        if not before.spec.is_websocket:
            continue
        after = new.get(name)
        if after is None:
            stale[name] = f"{before.kind} removed"
        elif (not after.spec.is_websocket or after.spec.public != before.spec.public
              or after.kind != before.kind):
            # A session keeps the rules it was admitted under: reconnect under the new ones.
            stale[name] = f"{before.kind} changed"
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


async def _refuse_accepted(receive: Any, send: Any, error: ProtocolError) -> None:
    """Accept, then send `error`'s frame and close with its code: as the other caps do,
    so that a browser client, which sees nothing of a refused upgrade, can read why."""
    if (await receive())["type"] != "websocket.connect":
        return  # the client left during the handshake
    with contextlib.suppress(OSError):  # uvicorn's ClientDisconnected: it left meanwhile
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": error.frame()})
        await send({"type": "websocket.close", "code": error.close_code,
                    "reason": error.reason or ""})


def _capacity(key: str, limit: int, whom: str) -> ProtocolError:
    return ProtocolError(CAPACITY, f"{whom} has reached {key} ({limit} open connections)",
                         reason=key, close_code=CLOSE_CAPACITY)


def _client_address(scope: dict) -> str:
    # The peer's address, or, with [server] proxy_headers, the one uvicorn took from
    # X-Forwarded-For of a proxy in forwarded_allow_ips (docs/operations.md).
    client = scope.get("client")
    return client[0] if client else ""


async def _no_receive() -> dict:  # pragma: no cover - a denial response never reads
    return {"type": "websocket.disconnect", "code": 1000}


# --- requests and responses ------------------------------------------------------------


async def _fields_of(request: Request, binding: WalkerBinding) -> dict:
    if request.method in _BODY_METHODS:
        body = await request.body()
        # An empty body is an empty object: a walker without required fields needs nothing.
        return decode_object(body, binding.max_keys) if body.strip() else {}
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


def _http_result(binding: FunctionBinding, value: object) -> str:
    """A served function's answer over HTTP; a stream has no HTTP form (E0110 at compile time)."""
    if is_stream(value):
        close = getattr(value, "close", None)  # a sync generator: its `finally` runs now
        if close is not None:
            close()
        raise ProtocolError(
            EXECUTION_ERROR,
            f"function `{binding.name}` returned a generator: streams are served over "
            "WebSocket only (`@restspec(protocol=APIProtocol.WEBSOCKET)`)")
    return result_frame(value, binding.name)


def _json_response(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/json")


def _throttled_response(throttled: Throttled) -> Response:
    error = ProtocolError(RATE_LIMITED, str(throttled), reason=throttled.reason)
    headers = {"Retry-After": str(throttled.retry_after)}
    return Response(error.frame(), status_code=429, media_type="application/json",
                    headers=headers)


def _login_limits(auth: AuthConfig) -> LoginLimits:
    return LoginLimits(
        attempts=auth.login_attempts,
        address_attempts=auth.login_address_attempts,
        window_seconds=auth.login_window_seconds,
        backoff_seconds=auth.login_backoff_seconds,
        max_entries=auth.login_throttle_entries,
    )


def _error_response(error: ProtocolError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return Response(
        error.frame(), status_code=error.status, media_type="application/json", headers=headers
    )


def _walker_methods(binding: WalkerBinding) -> tuple[str, ...]:
    method = binding.spec.method
    return ("POST",) if method == "POST" else ("POST", method)


def _method_not_allowed(what: str, allowed: Iterable[str], method: str) -> Response:
    allowed = list(allowed)
    error = ProtocolError(METHOD_NOT_ALLOWED, f"{what} takes {' or '.join(allowed)}, got {method}")
    response = _error_response(error)
    response.headers["Allow"] = ", ".join(allowed)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        # Starlette's route names the methods it takes in `Allow` (in no fixed order).
        allowed = sorted((exc.headers or {}).get("Allow", "").split(", "))
        return _method_not_allowed(request.url.path, allowed, request.method)
    code = {404: NOT_FOUND}.get(exc.status_code, INVALID_PAYLOAD)
    response = _error_response(ProtocolError(code, str(exc.detail), status=exc.status_code))
    response.headers.update(exc.headers or {})
    return response


async def _protocol_error(request: Request, exc: Exception) -> Response:
    # Raised outside a route's own handling, e.g. by BodyLimit while a body is read.
    assert isinstance(exc, ProtocolError)
    return _error_response(exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client left (or was dropped at handshake_timeout_seconds, which logs why)
    # before its request was complete: not an error of ours, and nobody reads the answer.
    logger.debug("client left during %s %s before its request was complete",
                 request.method, request.url.path)
    return Response(status_code=400)


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
