"""Server configuration (docs/configuration.md): `jacc.toml`, then `JACC_*` environment variables, then flags.

`load_config` reads the three layers, checks every value before the server starts
and returns frozen dataclasses. A bad value is a `ConfigError` whose message is
one line naming the key and where the value came from, so `serve` can print it
and exit 1 without a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .origins import allowed_origin

CONFIG_FILE_NAME = "jacc.toml"
STATE_DIR_NAME = ".jacc"


@dataclass(frozen=True)
class WebSocketConfig:
    """The `[websocket]` table: limits and liveness of WebSocket walkers."""

    max_message_bytes: int = 65536
    messages_per_second: float = 50.0
    max_connections_per_walker: int = 10000
    max_connections_per_user: int = 32
    max_connections_per_ip: int = 256
    walker_timeout_seconds: float = 30.0
    heartbeat_seconds: float = 30.0
    auth_timeout_seconds: float = 10.0
    send_timeout_seconds: float = 5.0
    # The outbound queue of each connection, in bytes of UTF-8 (docs/protocol.md#slow-consumers).
    send_queue_bytes: int = 1048576
    allowed_origins: tuple[str, ...] = ()
    # Broadcasts kept per walker for `?since=` (docs/scaling.md); 0 keeps none.
    history: int = 1000
    # "memory" (one process) or a Redis URL shared by every worker and host.
    backplane: str = "memory"
    # Prefix of every Redis key; empty means "jacc:" and the app file's stem.
    backplane_namespace: str = ""


@dataclass(frozen=True)
class AuthConfig:
    """The `[auth]` table. `database` is a SQLite file, absolute once it comes out of
    `load_config`, or a `postgresql://` URL (a str) for accounts shared by several hosts."""

    secret: str = ""
    token_ttl_seconds: int = 86400
    database: Path | str = Path(STATE_DIR_NAME) / "users.db"
    # How long a token retired by a refresh still serves requests (0: not at all).
    refresh_grace_seconds: float = 30.0
    # Login throttling (docs/security.md): failures allowed per user name and per
    # address, refilled over the window; then lockouts from the backoff, doubling.
    login_attempts: int = 5
    login_address_attempts: int = 20
    login_window_seconds: float = 900.0
    login_backoff_seconds: float = 1.0
    login_throttle_entries: int = 10000


@dataclass(frozen=True)
class ServerConfig:
    """The `[server]` table: where and how to serve, and the limits of HTTP and of sockets.

    Host, port and dev mode come from flags and `JACC_SERVER_*` only, never from
    the file (`_FLAG_ONLY`); the limits may be in the file too.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    dev: bool = False
    workers: int = 1
    max_body_bytes: int = 1048576
    max_header_bytes: int = 65536
    handshake_timeout_seconds: float = 10.0
    max_connections: int = 10000
    console: bool = True  # the browser console at /__jacc/console and the `/` redirect
    # On SIGTERM, how long walkers already running get to finish (docs/security.md#shutdown).
    drain_seconds: float = 5.0
    # Operations (docs/operations.md): GET /metrics, the log, TLS and a proxy in front.
    metrics: bool = True
    log_format: str = "text"
    log_level: str = "info"
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Off unlike uvicorn's default: trusting X-Forwarded-For from 127.0.0.1 would let any
    # local client choose the address the per-address limits count (docs/operations.md).
    proxy_headers: bool = False
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    root_path: str = ""


@dataclass(frozen=True)
class Config:
    """Everything `serve` needs to know, checked."""

    websocket: WebSocketConfig
    auth: AuthConfig
    server: ServerConfig
    app_dir: Path

    @property
    def state_dir(self) -> Path:
        """The `.jacc/` folder beside the app (generated secret, account store)."""
        return self.app_dir / STATE_DIR_NAME


class ConfigError(Exception):
    """A bad configuration value, as one printable line.

    `str(e)` is like ``config: websocket.max_message_bytes must be an integer > 0,
    got 0 (from JACC_WEBSOCKET_MAX_MESSAGE_BYTES)``. `key` is the dotted key
    (``""`` when the file as a whole is wrong); `source` is the file, variable or
    flag the value came from.
    """

    def __init__(self, message: str, key: str = "", source: str = "") -> None:
        suffix = f" (from {source})" if source else ""
        super().__init__(f"config: {message}{suffix}")
        self.key = key
        self.source = source


_SECTIONS: dict[str, type] = {
    "websocket": WebSocketConfig,
    "auth": AuthConfig,
    "server": ServerConfig,
}
# Host, port and dev mode belong to how one machine runs the app, not to the app,
# so they are not read from the file that ships beside it. The server's limits
# are about what the app can take, so they are.
_FLAG_ONLY = frozenset({"server.host", "server.port", "server.dev", "server.workers"})
_FLAGS = {"server.host": "--host", "server.port": "--port", "server.dev": "--dev",
          "server.workers": "--workers", "auth.token_ttl_seconds": "--ttl",
          **{f"server.{key}": "--" + key.replace("_", "-") for key in (
              "ssl_certfile", "ssl_keyfile", "proxy_headers", "forwarded_allow_ips",
              "root_path", "log_level")}}
# Keys that were replaced: naming the new one beats "unknown key" for whoever upgrades.
_RENAMED = {
    "websocket.send_queue_frames": "websocket.send_queue_bytes, which bounds the outbound "
                                   "queue in bytes (default 1048576)",
}
LOG_FORMATS = ("text", "json")
# uvicorn's levels, by uvicorn's names.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
_INT_RANGES = {"server.port": (1, 65535), "websocket.history": (0, None)}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_WANTS: dict[object, str] = {
    int: "an integer > 0",
    float: "a number > 0",
    bool: "true or false",
    str: "a string",
    Path: "a non-empty path",
    Path | None: "a path, or empty for none",
    tuple[str, ...]: 'a list of origins like "https://example.com", or ["*"]',
}
_KEY_WANTS = {
    "server.port": "an integer from 1 to 65535",
    "server.host": "a non-empty host name or address",
    "websocket.history": "an integer >= 0",
    "auth.database": 'a SQLite file path or a URL like "postgresql://user@host/db"',
    "websocket.backplane": '"memory" or a Redis URL like "redis://127.0.0.1:6379/0"',
    "websocket.backplane_namespace": "a key prefix without spaces, at most 100 characters",
    "auth.refresh_grace_seconds": "a number >= 0",
    "server.log_format": " or ".join(f'"{name}"' for name in LOG_FORMATS),
    "server.log_level": "one of " + ", ".join(f'"{name}"' for name in LOG_LEVELS),
    "server.forwarded_allow_ips": 'a list of proxy addresses or networks like "10.0.0.0/8", '
                                  'or ["*"]',
    "server.root_path": 'a path prefix like "/chat" (a leading slash, none at the end), '
                        'or empty',
}
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_NAMESPACE = re.compile(r"[!-~]{1,100}")  # printable ASCII, no spaces: it is part of every key

# A value on its way through the layers: what it is and where it came from.
_Raw = dict[str, tuple[object, str]]


def load_config(
    app: Path,
    config_file: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Read and check the configuration of the app at `app`.

    Precedence, lowest first: `jacc.toml` beside the app (or `config_file`, which
    must then exist), `JACC_<SECTION>_<KEY>` variables in `environ`, `overrides`
    (dotted keys such as ``"server.port"``; a ``None`` value means "not given").
    Raises `ConfigError` for any bad value; an unknown override key is a caller
    bug and raises `ValueError`.
    """
    app_dir = Path(os.path.abspath(app)).parent
    raw: _Raw = {}
    explicit = config_file is not None
    path = Path(config_file) if explicit else Path(app).parent / CONFIG_FILE_NAME
    raw.update(_file_layer(path, explicit))
    raw.update(_env_layer(environ))
    raw.update(_override_layer(overrides or {}))
    auth = _build_section("auth", raw)
    websocket = _build_section("websocket", raw)
    if not websocket.backplane_namespace:
        # The app's name, not its folder: every host must arrive at the same keys.
        websocket = dataclasses.replace(websocket, backplane_namespace=f"jacc:{Path(app).stem}")
    return Config(
        websocket=websocket,
        auth=dataclasses.replace(auth, database=_beside(app_dir, auth.database)
                                 if isinstance(auth.database, Path) else auth.database),
        server=_server_paths(_build_section("server", raw), app_dir),
        app_dir=app_dir,
    )


@functools.cache
def _fields(section: str) -> dict[str, object]:
    return typing.get_type_hints(_SECTIONS[section])


def _beside(app_dir: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else app_dir / path


def _server_paths(server: ServerConfig, app_dir: Path) -> ServerConfig:
    # Like the account store: a relative path is the app's folder's, not the cwd's.
    return dataclasses.replace(server, **{
        key: _beside(app_dir, path) for key in ("ssl_certfile", "ssl_keyfile")
        if (path := getattr(server, key)) is not None
    })


# --- the three layers -------------------------------------------------------------


def _file_layer(path: Path, explicit: bool) -> _Raw:
    text = _read_text(path, explicit)
    if text is None:
        return {}
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _syntax_error(path, error) from None
    raw: _Raw = {}
    for section, table in document.items():
        where = _located(path, text, section)
        _check_section(section, table, where)
        for key, value in table.items():
            where = _located(path, text, section, key)
            dotted = f"{section}.{key}"
            _check_renamed(dotted, where)
            if key not in _fields(section):
                raise ConfigError(f"unknown key {dotted}{_suggest_key(section, key)}",
                                  dotted, where)
            if dotted in _FLAG_ONLY:
                variable = f"JACC_{section.upper()}_{key.upper()}"
                raise ConfigError(f"{dotted} is not read from the config file; use "
                                  f"{_FLAGS[dotted]} or {variable}", dotted, where)
            raw[dotted] = (value, where)
    return raw


def _file_keys() -> list[str]:
    return [f"{section}.{key}" for section in _SECTIONS for key in _fields(section)
            if f"{section}.{key}" not in _FLAG_ONLY]


def _read_text(path: Path, explicit: bool) -> str | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: no such file", source="--config") from None
        return None  # no jacc.toml beside the app: every default applies
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, which TOML requires") from None


def _syntax_error(path: Path, error: tomllib.TOMLDecodeError) -> ConfigError:
    # Python 3.11's TOMLDecodeError has the position only in its message.
    message = str(error)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match is None:
        return ConfigError(f"{path}: invalid TOML: {message}")
    line, column = match.groups()
    return ConfigError(f"{path}:{line}:{column}: invalid TOML: {message[:match.start()]}")


def _check_section(section: str, table: object, where: str) -> None:
    if section not in _SECTIONS:
        if not isinstance(table, dict):
            qualified = _file_keys()
            hint = _suggest(section, qualified, key=lambda q: q.partition(".")[2])
            raise ConfigError(f"key {section} must be inside a section{hint}", section, where)
        hint = _suggest(section, _SECTIONS, shape="[{}]")
        raise ConfigError(f"unknown section [{section}]{hint}", section, where)
    if not isinstance(table, dict):
        raise ConfigError(f"{section} must be a table ([{section}]), got {_show(table)}",
                          section, where)


def _env_layer(environ: Mapping[str, str]) -> _Raw:
    raw: _Raw = {}
    for variable, text in sorted(environ.items()):
        for section in _SECTIONS:
            prefix = f"JACC_{section.upper()}_"
            if not variable.startswith(prefix):
                continue
            key = variable[len(prefix):].lower()
            _check_renamed(f"{section}.{key}", variable)
            if key not in _fields(section):
                # A mistyped variable would otherwise be ignored in silence.
                names = [f"{prefix}{k.upper()}" for k in _fields(section)]
                raise ConfigError(f"unknown key {section}.{key}{_suggest(variable, names)}",
                                  f"{section}.{key}", variable)
            raw[f"{section}.{key}"] = (text, variable)
    return raw


def _check_renamed(dotted: str, source: str) -> None:
    if dotted in _RENAMED:
        raise ConfigError(f"{dotted} was replaced by {_RENAMED[dotted]}", dotted, source)


def _override_layer(overrides: Mapping[str, object]) -> _Raw:
    raw: _Raw = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in _SECTIONS or key not in _fields(section):
            raise ValueError(f"unknown config override {dotted!r}")
        raw[dotted] = (value, _FLAGS.get(dotted, f"override {dotted}"))
    return raw


# --- where a value came from, and did-you-mean ---------------------------------------

_HEADER = re.compile(r"\s*\[\[?\s*([^\]]+?)\s*\]")
_ASSIGNMENT = re.compile(r"""\s*(["']?)([A-Za-z0-9_.-]+)\1\s*=""")


def _located(path: Path, text: str, section: str, key: str | None = None) -> str:
    line = _line_of(text, section, key)
    return f"{path}:{line}" if line else str(path)


def _line_of(text: str, section: str, key: str | None) -> int | None:
    # Best effort: tomllib gives no positions, and a line number saves a search.
    current: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            current = header.group(1).strip("\"'")
            if key is None and current == section:
                return number
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment is None:
            continue
        name = assignment.group(2)
        if key is None and current is None and name.split(".")[0] == section:
            return number
        if key is not None and (current, name) in ((section, key), (None, f"{section}.{key}")):
            return number
    return None


def _suggest(word: str, candidates: Iterable[str], shape: str = "{}",
             key: typing.Callable[[str], str] = lambda c: c) -> str:
    by_key = {key(c): c for c in candidates}
    match = difflib.get_close_matches(word, list(by_key), n=1, cutoff=0.6)
    return f", did you mean {shape.format(by_key[match[0]])}?" if match else ""


def _suggest_key(section: str, key: str) -> str:
    for other in _SECTIONS:
        if other != section and f"{other}.{key}" in _file_keys():
            return f", did you mean {other}.{key} (in [{other}])?"
    return _suggest(key, [f"{section}.{k}" for k in _fields(section)],
                    key=lambda q: q.partition(".")[2])


# --- checking values ---------------------------------------------------------------


def _build_section(section: str, raw: _Raw) -> typing.Any:
    values = {}
    for name, kind in _fields(section).items():
        dotted = f"{section}.{name}"
        if dotted in raw:
            value, source = raw[dotted]
            values[name] = _convert(dotted, kind, value, source)
    return _SECTIONS[section](**values)


def _convert(dotted: str, kind: object, value: object, source: str) -> object:
    if isinstance(value, str) and kind not in (str, Path, Path | None, Path | str):
        value = _parse_text(dotted, kind, value, source)
    check = _KEY_CHECKS.get(dotted) or _KIND_CHECKS[kind]
    return check(dotted, value, source)


def _parse_text(dotted: str, kind: object, text: str, source: str) -> object:
    """Turn an environment variable (or a string override) into the field's type."""
    stripped = text.strip()
    try:
        if kind is int:
            return int(stripped)
        if kind is float:
            return float(stripped)
        if kind is bool:
            return _parse_bool(stripped)
        return _parse_list(stripped)
    except ValueError:
        raise _bad(dotted, text, source) from None


def _parse_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(text)


def _parse_list(text: str) -> list[object]:
    if not text:
        return []
    if not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return tomllib.loads(f"value = {text}")["value"]  # TOML style: 'single quotes'
    except tomllib.TOMLDecodeError:
        raise ValueError(text) from None


def _check_int(dotted: str, value: object, source: str) -> int:
    low, high = _INT_RANGES.get(dotted, (1, None))
    # bool is a subclass of int, and `true` for a count is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(dotted, value, source)
    if value < low or (high is not None and value > high):
        raise _bad(dotted, value, source)
    return value


def _check_float(dotted: str, value: object, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(dotted, value, source)
    if not math.isfinite(value) or value <= 0:
        raise _bad(dotted, value, source)
    return float(value)


def _check_seconds_or_zero(dotted: str, value: object, source: str) -> float:
    # A grace period may be none at all, unlike a limit.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(dotted, value, source)
    if not math.isfinite(value) or value < 0:
        raise _bad(dotted, value, source)
    return float(value)


def _check_bool(dotted: str, value: object, source: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(dotted, value, source)
    return value


def _check_str(dotted: str, value: object, source: str) -> str:
    if not isinstance(value, str):
        raise _bad(dotted, value, source)
    return value


def _check_host(dotted: str, value: object, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(dotted, value, source)
    return value.strip()


def _check_path(dotted: str, value: object, source: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not os.fspath(value).strip():
        raise _bad(dotted, value, source)
    return Path(value)


def _check_optional_path(dotted: str, value: object, source: str) -> Path | None:
    # Empty is "none", so that an environment variable can unset what the file set.
    if isinstance(value, str | os.PathLike) and not os.fspath(value).strip():
        return None
    return _check_path(dotted, value, source)


def _check_choice(choices: tuple[str, ...]) -> typing.Callable[[str, object, str], str]:
    def check(dotted: str, value: object, source: str) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise _bad(dotted, value, source)
        return value.strip().lower()

    return check


def _check_proxies(dotted: str, value: object, source: str) -> tuple[str, ...]:
    # uvicorn takes any text, and an entry it cannot read as an address or a network
    # (`10.0.0.1/8` included, which has host bits) is a literal that never matches a TCP
    # peer, as is a `*` beside other entries: a typo would trust no one, in silence.
    if not isinstance(value, list | tuple) or not value:
        raise _bad(dotted, value, source)
    entries = tuple(entry.strip() if isinstance(entry, str) else entry for entry in value)
    for entry in entries:
        alone = entry != "*" or len(entries) == 1
        if not isinstance(entry, str) or not _is_proxy(entry) or not alone:
            raise _bad(dotted, entry, source)
    return entries


def _is_proxy(entry: str) -> bool:
    if entry == "*":
        return True
    try:
        if "/" in entry:
            ipaddress.ip_network(entry)
        else:
            ipaddress.ip_address(entry)
    except ValueError:
        return False
    return True


_ROOT_PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")


def _check_root_path(dotted: str, value: object, source: str) -> str:
    if not isinstance(value, str) or not _ROOT_PATH.fullmatch(value.strip()):
        raise _bad(dotted, value, source)
    return value.strip()


def _check_origins(dotted: str, value: object, source: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise _bad(dotted, value, source)
    return tuple(_origin(dotted, entry, source) for entry in value)


def _check_database(dotted: str, value: object, source: str) -> Path | str:
    # A PostgreSQL URL stays a URL; anything else is the SQLite file's path.
    if isinstance(value, str) and value.strip().startswith(_POSTGRES_SCHEMES):
        url = value.strip()
        if url.partition("://")[2]:
            return url
        raise _bad(dotted, value, source)
    return _check_path(dotted, value, source)


def _check_backplane(dotted: str, value: object, source: str) -> str:
    if not isinstance(value, str):
        raise _bad(dotted, value, source)
    value = value.strip()
    if value == "memory":
        return value
    scheme, separator, rest = value.partition("://")
    if not separator or scheme.lower() not in _REDIS_SCHEMES or not rest:
        raise _bad(dotted, value, source)
    return value


def _check_namespace(dotted: str, value: object, source: str) -> str:
    # Empty means the default, which load_config fills in from the app's name.
    if not isinstance(value, str) or (value and not _NAMESPACE.fullmatch(value)):
        raise _bad(dotted, value, source)
    return value


def redacted_url(url: str) -> str:
    """`url` with any password replaced by `***`, fit for a log line or an error message."""
    url = _PASSWORD_PARAMETER.sub(r"\1***", url)
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    if not (separator and at and colon):
        return url
    return f"{scheme}://{user}:***@{host}"


_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def _origin(dotted: str, entry: object, source: str) -> str:
    try:
        return allowed_origin(entry)
    except ValueError:
        raise ConfigError(f"{dotted} entries must be origins like \"https://example.com\" "
                          f"(scheme://host[:port], no path) or \"*\", got {_show(entry)}",
                          dotted, source) from None


_KIND_CHECKS: dict[object, typing.Callable[[str, object, str], object]] = {
    int: _check_int,
    float: _check_float,
    bool: _check_bool,
    str: _check_str,
    Path: _check_path,
    Path | None: _check_optional_path,
    tuple[str, ...]: _check_origins,
}
_KEY_CHECKS: dict[str, typing.Callable[[str, object, str], object]] = {
    "server.host": _check_host,
    "auth.database": _check_database,
    "websocket.backplane": _check_backplane,
    "websocket.backplane_namespace": _check_namespace,
    "auth.refresh_grace_seconds": _check_seconds_or_zero,
    "server.log_format": _check_choice(LOG_FORMATS),
    "server.log_level": _check_choice(LOG_LEVELS),
    "server.forwarded_allow_ips": _check_proxies,
    "server.root_path": _check_root_path,
}


def _bad(dotted: str, value: object, source: str) -> ConfigError:
    section, _, name = dotted.partition(".")
    want = _KEY_WANTS.get(dotted) or _WANTS[_fields(section)[name]]
    if dotted == "auth.secret":
        got = _kind_of(value)
    elif dotted in ("websocket.backplane", "auth.database") and isinstance(value, str):
        got = _show(redacted_url(value))  # a Redis URL may carry a password
    else:
        got = _show(value)
    return ConfigError(f"{dotted} must be {want}, got {got}", dotted, source)


def _show(value: object) -> str:
    """A value as the user wrote it (TOML spelling), short and on one line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _kind_of(value: object) -> str:
    # Used for the secret: say what kind of value it was, never the value.
    kinds = {bool: "a boolean", int: "an integer", float: "a number", list: "a list",
             dict: "a table"}
    return kinds.get(type(value), f"a value of type {type(value).__name__}")
