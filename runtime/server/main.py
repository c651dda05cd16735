"""`jacc serve` and `jacc token` as functions, in uvicorn's shape: resolve the config
and the walkers, build the app, run it (docs/protocol.md, docs/configuration.md).

    serve(ServeOptions(app=Path("app.jac"), port=8000), load=loader)
    token = issue_token("ann")

`load` builds the program (walkers and served functions) of a source path,
raising `BuildFailed` when the program is wrong; the CLI hands it over, so that the
server never imports the compiler. A user's mistake (a bad config value, a program
with errors, a port in use) raises `ServeError` with what to tell the user; the CLI
prints it and exits 1. Everything else is a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.config
import os
import signal
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence, TextIO

import sys
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from .app import JaccApp
from .auth import TokenService, resolve_secret
from .config import Config, ConfigError, load_config, redacted_url
from .logs import log_config, uvicorn_level
from .functions import bind
from .metrics import shared_across_workers, worker_exited
from .program import Loader, ServeError, Target, targets_of
from .protocol import CLOSE_GOING_AWAY
from .reload import STATUS_PATH, DevReloader
from .scaling import (
    check_scale_out,
    make_backplane,
    open_account_store,
    probe_backplane,
    uses_redis,
)
from .sockets import SocketLimits, fit_open_files, protocol_classes
from .workers import Supervisor
from .ws.limits import protocol_max_size

__all__ = ["ServeOptions", "issue_token", "serve", "walker_table"]

logger = logging.getLogger("jacc.serve")

# How long open sockets get to receive their 1001 close on shutdown.
_CLOSE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ServeOptions:
    """What `jacc serve` was asked for; None means "from the config, else the default"."""

    app: Path
    host: str | None = None
    port: int | None = None
    dev: bool = False
    config: Path | None = None
    # uvicorn's serving options, by uvicorn's names (docs/operations.md).
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    proxy_headers: bool | None = None
    forwarded_allow_ips: str | None = None
    root_path: str | None = None
    log_level: str | None = None
    workers: int | None = None


def serve(options: ServeOptions, load: Loader,
          environ: Mapping[str, str] = os.environ) -> None:
    """Serve the walkers of `options.app` until Ctrl-C or SIGTERM.

    Raises `ServeError` (or its `BuildFailed`) when the user's input is wrong.
    """
    config = _resolve_config(options, environ)
    _check_tls(config)
    walkers = _first_build(options.app, load)
    check_scale_out(config, walkers, environ)
    # Configure logging now: creating the secret, below, is worth a line in the log.
    logging.config.dictConfig(log_config(config.server.log_format, config.server.log_level))
    probe_backplane(config)
    if config.server.workers > 1:
        _serve_workers(options.app, config, walkers, environ)
        return
    app = _build_app(options.app, config, walkers, environ)
    reloader = DevReloader(app, options.app, load) if config.server.dev else None
    try:
        _banner(options.app, config, walker_table(app))
        if reloader is not None:
            _say(config, f"dev mode: watching {options.app}; build status at {STATUS_PATH}")
        limits = _socket_limits(config)
        _run(_Server(_uvicorn_config(app, config, limits), app, reloader))
    finally:
        app.accounts.close()


def issue_token(user: str, ttl: int | None = None, app: Path | None = None,
                environ: Mapping[str, str] = os.environ) -> str:
    """A token for `user` signed with the secret `serve` would use.

    The secret and the TTL come from the config of `app`, or of the current
    folder when no app is named; without a configured secret the one in
    `.jacc/` is used, created if need be, so a later `serve` accepts the token.
    """
    # load_config only looks at the app's folder, so a stand-in name does for the cwd.
    anchor = app if app is not None else Path.cwd() / "app.jac"
    try:
        config = load_config(anchor, environ=environ,
                             overrides={"auth.token_ttl_seconds": ttl})
        secret = resolve_secret(config.auth.secret, config.state_dir, environ)
    except ConfigError as error:
        raise ServeError(str(error)) from None
    except (ValueError, OSError) as error:
        raise ServeError(f"error: {error}") from None
    return TokenService(secret, ttl_seconds=config.auth.token_ttl_seconds).issue(user)


def walker_table(app: JaccApp) -> list[tuple[str, str, str, str, str, str]]:
    """(name, route, protocol, public, broadcast, stream) of every walker and served
    function, for the banner."""
    return _table(app.bindings.values())


def _table(bindings: Iterable) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for binding in bindings:
        spec = binding.spec
        name = spec.name
        if spec.is_websocket:
            route = f"/ws/{name}" if binding.kind == "walker" else f"/ws/function/{name}"
        else:
            route = f"{spec.method} /{binding.kind}/{name}"
        rows.append((name, route, spec.protocol, _yes(spec.public), _yes(spec.broadcast),
                     _yes(spec.stream)))
    return rows


# --- the stages of serve ------------------------------------------------------------


def _resolve_config(options: ServeOptions, environ: Mapping[str, str]) -> Config:
    try:
        return load_config(
            options.app,
            options.config,
            environ=environ,
            overrides={
                "server.host": options.host,
                "server.port": options.port,
                "server.dev": options.dev or None,
                "server.workers": options.workers,
                # A path on the command line is the working directory's, as for any tool.
                "server.ssl_certfile": _absolute(options.ssl_certfile),
                "server.ssl_keyfile": _absolute(options.ssl_keyfile),
                "server.proxy_headers": options.proxy_headers,
                "server.forwarded_allow_ips": options.forwarded_allow_ips,
                "server.root_path": options.root_path,
                "server.log_level": options.log_level,
            },
        )
    except ConfigError as error:
        raise ServeError(str(error)) from None


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(path).absolute()


def _check_tls(config: Config) -> None:
    """A certificate that cannot be loaded is the user's mistake: one line, before serving."""
    server = config.server
    if server.ssl_certfile is None:
        if server.ssl_keyfile is not None:
            raise ServeError("config: server.ssl_keyfile is set without server.ssl_certfile")
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(server.ssl_certfile, server.ssl_keyfile)
    except (OSError, ssl.SSLError) as error:
        files = " and ".join(str(p) for p in (server.ssl_certfile, server.ssl_keyfile) if p)
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise ServeError(f"config: server.ssl_certfile: cannot load a certificate and key "
                         f"from {files}: {reason}") from None


def _first_build(path: Path, load: Loader) -> Sequence[Target]:
    if not path.is_file():
        raise ServeError(f"error: {path}: no such file")
    return load(path)  # raises BuildFailed, which the CLI shows


def _build_app(path: Path, config: Config, walkers: Sequence[Target],
               environ: Mapping[str, str]) -> JaccApp:
    try:
        secret = resolve_secret(config.auth.secret, config.state_dir, environ)
        tokens = TokenService(secret, ttl_seconds=config.auth.token_ttl_seconds)
    except (ValueError, OSError) as error:
        raise ServeError(f"error: {error}") from None
    accounts = open_account_store(config.auth.database)
    return JaccApp(
        walkers, tokens=tokens, config=config, accounts=accounts,
        backplane=make_backplane(config), title=path.stem,
    )


def _serve_workers(path: Path, config: Config, walkers: Sequence[Target],
                   environ: Mapping[str, str]) -> None:
    """Bind once, then fork the workers (workers.py), each serving the walkers built here."""
    limits = _socket_limits(config)
    open_account_store(config.auth.database).close()  # reachable, and its schema made, once
    sock = _bind(config)
    _banner(path, config, _table(bind(target) for target in targets_of(walkers)))

    def serve_one(sock: object) -> None:
        try:
            app = _build_app(path, config, walkers, environ)
        except ServeError as error:
            logger.error("%s", error)
            raise SystemExit(STARTUP_FAILURE) from None  # the parent stops every worker
        try:
            with _signals_handled():
                _Server(_uvicorn_config(app, config, limits), app).run(sockets=[sock])
        finally:
            app.accounts.close()

    # GET /metrics answered by any worker counts them all (metrics.py).
    shared = shared_across_workers() if config.server.metrics else contextlib.nullcontext()
    with shared:
        status = Supervisor(config.server.workers, serve_one, sock, exited=worker_exited).run()
    if status:
        raise ServeError("error: the workers could not start (see the log above)")


def _bind(config: Config):
    try:
        return uvicorn.Config(None, host=config.server.host, port=config.server.port,
                              log_config=None).bind_socket()
    except SystemExit:  # uvicorn logged why (a port in use)
        raise ServeError(f"error: cannot serve on {config.server.host}:"
                         f"{config.server.port}") from None


def _run(server: uvicorn.Server) -> None:
    try:
        with _signals_handled():
            server.run()
    except SystemExit as stop:
        # uvicorn exits (status 3) when it cannot listen, e.g. a port in use; it has
        # logged why. For the user that is a wrong input.
        if stop.code:
            raise ServeError(f"error: cannot serve on {server.config.host}:"
                             f"{server.config.port}") from None


# --- the pieces of serve ---------------------------------------------------------------


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _serving(app_path: Path, config: Config) -> str:
    host, port = config.server.host, config.server.port
    shown = f"[{host}]" if ":" in host else host
    secure = "s" if config.server.ssl_certfile is not None else ""
    base = f"{shown}:{port}{config.server.root_path}"
    return (f"jacc serving {app_path} at http{secure}://{base}  "
            f"(WebSocket: ws{secure}://{base}/ws/NAME)")


def _say(config: Config, line: str) -> None:
    if config.server.log_format == "json":
        logger.info("%s", line)
    else:
        print(line, flush=True)


def _banner(app_path: Path, config: Config, table: list[tuple[str, ...]]) -> None:
    if config.server.log_format == "json":
        _log_banner(app_path, config, table)  # stdout, too, is JSON lines only
    else:
        _print_banner(app_path, config, table)


def _log_banner(app_path: Path, config: Config,
                table: list[tuple[str, ...]]) -> None:
    """The banner as one log line, its table as the line's `walkers` (docs/operations.md#logs)."""
    names = ("walker", "route", "protocol", "public", "broadcast", "stream")
    walkers = [dict(zip(names, row)) for row in table]
    logger.info("%s", _serving(app_path, config), extra={"walkers": walkers})
    if config.server.workers > 1 or uses_redis(config):
        logger.info("%s", _scale_line(config))


def _print_banner(app_path: Path, config: Config, table: list[tuple[str, ...]],
                  out: TextIO | None = None) -> None:
    out = out or sys.stdout
    print(_serving(app_path, config), file=out)
    if config.server.workers > 1 or uses_redis(config):
        print(f"  {_scale_line(config)}", file=out)
    rows = [("name", "route", "protocol", "public", "broadcast", "stream"), *table]
    if len(rows) == 1:
        print("  (no walkers or functions)", file=out)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(),
              file=out)
    out.flush()


def _scale_line(config: Config) -> str:
    websocket = config.websocket
    workers = config.server.workers
    processes = f"{workers} workers" if workers > 1 else "1 worker"
    if not uses_redis(config):
        return f"{processes}, memory backplane"
    return (f"{processes}, Redis backplane {redacted_url(websocket.backplane)} "
            f"(keys {websocket.backplane_namespace}:*)")


def _socket_limits(config: Config) -> SocketLimits:
    server = config.server
    fitting = fit_open_files(server.max_connections)
    if fitting < server.max_connections:
        logger.warning("server.max_connections is %d but the open-file limit (ulimit -n) "
                       "leaves room for %d: connections past that get 503",
                       server.max_connections, fitting)
    return SocketLimits(
        max_connections=fitting,
        max_header_bytes=server.max_header_bytes,
        handshake_timeout_seconds=server.handshake_timeout_seconds,
    )


def _uvicorn_config(app: JaccApp, config: Config, limits: SocketLimits) -> uvicorn.Config:
    server = config.server
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=log_config(server.log_format, server.log_level),
        log_level=uvicorn_level(server.log_level),
        lifespan="on",
        timeout_graceful_shutdown=_CLOSE_TIMEOUT_SECONDS,
        # permessage-deflate would compress every broadcast once per client, keep
        # tens of KiB of zlib state per idle connection, and gain little on small
        # JSON frames: off.
        ws_per_message_deflate=False,
        **_websocket_limits(config),
        **_serving_options(config),
        **protocol_classes(limits),
    )


def _serving_options(config: Config) -> dict:
    """TLS, the proxy in front and the path prefix, passed to uvicorn as they are."""
    server = config.server
    return {
        "ssl_certfile": server.ssl_certfile,
        "ssl_keyfile": server.ssl_keyfile,
        # jacc's default is off (uvicorn's is on): see docs/operations.md#behind-a-proxy.
        "proxy_headers": server.proxy_headers,
        "forwarded_allow_ips": list(server.forwarded_allow_ips),
        "root_path": server.root_path,
    }


def _websocket_limits(config: Config) -> dict:
    """The limits of docs/configuration.md that uvicorn's WebSocket layer enforces."""
    limits = config.websocket
    beat = limits.heartbeat_seconds
    return {
        # A ping every beat; a peer whose pong is not back within the next beat is
        # dropped (1011), so a dead peer goes within two beats of its last sign of life.
        "ws_ping_interval": beat,
        "ws_ping_timeout": beat,
        # Past this, the WebSocket parser refuses a frame from its header (1009)
        # before buffering it; below it the session answers MESSAGE_TOO_LARGE.
        "ws_max_size": protocol_max_size(limits.max_message_bytes),
    }


class _Server(uvicorn.Server):
    """uvicorn's server, draining walkers and then closing WebSockets with 1001 before it
    stops (uvicorn would cancel the walkers and say 1012)."""

    def __init__(self, config: uvicorn.Config, app: JaccApp,
                 reloader: DevReloader | None = None) -> None:
        super().__init__(config)
        self._jacc_app = app
        self._reloader = reloader

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        # uvicorn skips shutdown() when startup asked to exit: start nothing it won't stop.
        if self._reloader is not None and not self.should_exit:
            self._reloader.start()

    async def shutdown(self, sockets: list | None = None) -> None:
        if self._reloader is not None:
            await self._reloader.stop()
        # Still listening while walkers finish: a new request gets a 503, not a refused connection.
        await self._drain()
        # Stop accepting first, so that no socket opens behind the closing ones.
        for server in self.servers:
            server.close()
        await self._jacc_app.close_connections(CLOSE_GOING_AWAY, "server shutting down",
                                               _CLOSE_TIMEOUT_SECONDS)
        await super().shutdown(sockets)

    async def _drain(self) -> None:
        drain = asyncio.ensure_future(
            self._jacc_app.drain_walkers(self._jacc_app.config.server.drain_seconds))
        # A second Ctrl-C (uvicorn's force_exit) ends the drain at once.
        while not drain.done() and not self.force_exit:
            await asyncio.wait((drain,), timeout=0.1)
        drain.cancel()


@contextlib.contextmanager
def _signals_handled() -> Iterator[None]:
    """After a graceful shutdown, a Ctrl-C or SIGTERM is done with: exit 0.

    uvicorn re-raises the signal that stopped it once it has shut down, which
    with the default handlers would end the process by SIGTERM or with a
    KeyboardInterrupt; these handlers make that re-raise a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; uvicorn then handles none either
        return
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _ignore) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(signum: int, frame: object) -> None:
    pass
