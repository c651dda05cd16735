"""`jacc serve` and `jacc token` as functions: config, secret, app, uvicorn (SPEC §1, §7).

    exit_code = serve(ServeOptions(app=Path("app.jac"), port=8000))

The CLI only parses arguments and calls these; everything they print is for
the user, and a user's mistake (bad config, program with errors, port in use)
is a message and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, TextIO

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from .accounts import AccountStore
from .app import JaccApp
from .auth import TokenService, redact_tokens, resolve_secret
from .backplane import BackplaneUnavailable, create_backplane
from .config import Config, ConfigError, load_config
from .limits import protocol_max_size
from .lines import jac_traceback
from .protocol import CLOSE_GOING_AWAY
from .reload import STATUS_PATH, DevReloader
from .walker import Walker

__all__ = ["ServeOptions", "load_walkers", "print_token", "serve", "walker_table"]

EXIT_OK, EXIT_USER = 0, 1

# How long open sockets get to receive their 1001 close on shutdown.
_CLOSE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ServeOptions:
    """What `jacc serve` was asked for; None means "from the config, else the default"."""

    app: Path
    host: str | None = None
    port: int | None = None
    dev: bool = False
    workers: int | None = None
    config: Path | None = None


def serve(options: ServeOptions, environ: Mapping[str, str] = os.environ) -> int:
    """Serve the walkers of `options.app` until Ctrl-C or SIGTERM; return the exit status."""
    try:
        config = load_config(
            options.app,
            options.config,
            environ=environ,
            overrides={
                "server.host": options.host,
                "server.port": options.port,
                "server.workers": options.workers,
                "server.dev": options.dev or None,
            },
        )
    except ConfigError as error:
        return _fail(str(error))
    if not options.app.is_file():
        return _fail(f"error: {options.app}: no such file")
    from jacc.diagnostics import JacError  # serving source needs the compiler anyway

    try:
        walkers = load_walkers(options.app)  # a JacError reaches the CLI, which renders it
    except JacError:
        raise
    except Exception as error:  # the program's own top level raised: the user's error
        return _fail(f"{jac_traceback(error)}\nerror: {options.app} raised while loading")
    problem = _refuse_workers(config, walkers)
    if problem:
        return _fail(problem)
    # Configure logging now: creating the secret, below, is worth a line in the log.
    logging.config.dictConfig(_log_config())
    try:
        backplane = create_backplane(config.websocket.backplane)
        secret = resolve_secret(config.auth.secret, config.state_dir, environ)
        tokens = TokenService(secret, ttl_seconds=config.auth.token_ttl_seconds)
        accounts = AccountStore(config.auth.database)
    except (BackplaneUnavailable, ValueError, OSError) as error:
        return _fail(f"error: {error}")
    app = JaccApp(
        walkers, tokens=tokens, config=config, accounts=accounts, backplane=backplane,
        title=options.app.stem,
    )
    reloader = DevReloader(app, options.app, load_walkers) if config.server.dev else None
    try:
        _print_banner(options.app, config, app)
        if reloader is not None:
            print(f"dev mode: watching {options.app}; build status at {STATUS_PATH}", flush=True)
        server = _Server(_uvicorn_config(app, config), app, reloader)
        with _signals_handled():
            server.run()
    except SystemExit as stop:
        # uvicorn exits (status 3) when it cannot listen, e.g. a port in use; it has
        # logged why. For the user that is a wrong input: status 1.
        return EXIT_USER if stop.code else EXIT_OK
    finally:
        accounts.close()
    return EXIT_OK


def print_token(user: str, ttl: int | None = None, app: Path | None = None,
                environ: Mapping[str, str] = os.environ) -> int:
    """Print a token for `user` signed with the secret `serve` would use; return the exit status.

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
        token = TokenService(secret, ttl_seconds=config.auth.token_ttl_seconds).issue(user)
    except ConfigError as error:
        return _fail(str(error))
    except (ValueError, OSError) as error:
        return _fail(f"error: {error}")
    print(token)
    return EXIT_OK


def load_walkers(path: Path) -> list[type[Walker]]:
    """Compile and run the program at `path`; return its walker classes in source order.

    Raises `jacc.diagnostics.JacError` if the program has errors. The dev-mode
    reload calls this again on every change.
    """
    from jacc.compiler import load_module  # the compiler is needed to serve source only

    module = load_module(Path(path))
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Walker) and value is not Walker
    ]


def walker_table(app: JaccApp) -> list[tuple[str, str, str, str, str]]:
    """(name, route, protocol, public, broadcast) of every walker, for the banner."""
    rows = []
    for name, binding in app.bindings.items():
        spec = binding.spec
        route = f"/ws/{name}" if spec.is_websocket else f"{spec.method} /walker/{name}"
        rows.append((name, route, spec.protocol, _yes(spec.public), _yes(spec.broadcast)))
    return rows


# --- the pieces of serve ---------------------------------------------------------------


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_USER


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _refuse_workers(config: Config, walkers: list[type[Walker]]) -> str | None:
    if config.server.workers <= 1:
        return None
    broadcasting = [w.__jacc_spec__.name for w in walkers if w.__jacc_spec__.broadcast]
    if config.websocket.backplane == "memory" and broadcasting:
        return (
            f"error: --workers {config.server.workers} needs a shared backplane: with "
            f'backplane = "memory" a broadcast of {broadcasting[0]} would reach only the '
            "clients of one worker; set [websocket] backplane to a redis:// URL or use 1 worker"
        )
    return "error: --workers > 1 is not supported yet; serve with one worker"


def _print_banner(app_path: Path, config: Config, app: JaccApp, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    host, port = config.server.host, config.server.port
    shown = f"[{host}]" if ":" in host else host
    print(f"jacc serving {app_path} at http://{shown}:{port}  (WebSocket: ws://{shown}:{port}/ws/NAME)",
          file=out)
    rows = [("walker", "route", "protocol", "public", "broadcast"), *walker_table(app)]
    if len(rows) == 1:
        print("  (no walkers)", file=out)
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(),
              file=out)
    out.flush()


def _uvicorn_config(app: JaccApp, config: Config) -> uvicorn.Config:
    log_config = _log_config()
    return uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.port,
        log_config=log_config,
        lifespan="on",
        timeout_graceful_shutdown=_CLOSE_TIMEOUT_SECONDS,
        # permessage-deflate would compress every broadcast once per client, keep
        # tens of KiB of zlib state per idle connection, and gain little on small
        # JSON frames: off.
        ws_per_message_deflate=False,
        **_websocket_limits(config),
    )


def _websocket_limits(config: Config) -> dict:
    """The limits of SPEC §9 that uvicorn's WebSocket layer enforces."""
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


def _log_config() -> dict:
    """uvicorn's logging, plus the `jacc` loggers, with tokens redacted everywhere."""
    config = {
        **LOGGING_CONFIG,
        "filters": {"redact_tokens": {"()": RedactTokens}},
        "handlers": {
            name: {**handler, "filters": ["redact_tokens"]}
            for name, handler in LOGGING_CONFIG["handlers"].items()
        },
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "jacc": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
    return config


class RedactTokens(logging.Filter):
    """Replaces `token=...` in every log record: tokens must never reach a log (SPEC §7)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if record.args:
            # uvicorn's access formatter unpacks the arguments: keep their shape.
            if isinstance(record.args, tuple):
                record.args = tuple(_redacted(arg) for arg in record.args)
            elif isinstance(record.args, dict):
                record.args = {key: _redacted(value) for key, value in record.args.items()}
        return True


def _redacted(value: object) -> object:
    return redact_tokens(value) if isinstance(value, str) else value


class _Server(uvicorn.Server):
    """uvicorn's server, closing WebSockets with 1001 before it stops (uvicorn would say 1012)."""

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
        # Stop accepting first, so that no socket opens behind the closing ones.
        for server in self.servers:
            server.close()
        await self._jacc_app.close_connections(CLOSE_GOING_AWAY, "server shutting down",
                                               _CLOSE_TIMEOUT_SECONDS)
        await super().shutdown(sockets)


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
