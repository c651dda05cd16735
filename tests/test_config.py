"""Tests for runtime/config.py: jacc.toml < JACC_* environment < flags, and one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jacc_runtime.server import config as config_module
from jacc_runtime.server.config import (
    AuthConfig,
    Config,
    ConfigError,
    ServerConfig,
    WebSocketConfig,
    load_config,
)


def _app(tmp_path: Path, toml: str | None = None) -> Path:
    app = tmp_path / "app.jac"
    app.write_text("walker W {}\n")
    if toml is not None:
        (tmp_path / "jacc.toml").write_text(toml)
    return app


def _error(app: Path, **kwargs: object) -> ConfigError:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as caught:
        load_config(app, **kwargs)
    message = str(caught.value)
    assert message.startswith("config: ") and "\n" not in message
    return caught.value


# --- values and precedence --------------------------------------------------------


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    config = load_config(_app(tmp_path), environ={})
    assert config.websocket == WebSocketConfig(backplane_namespace="jacc:app")
    assert config.websocket.max_message_bytes == 65536
    assert config.auth.secret == "" and config.auth.token_ttl_seconds == 86400
    assert config.server == ServerConfig(host="127.0.0.1", port=8000, dev=False)
    assert config.app_dir == tmp_path
    assert config.state_dir == tmp_path / ".jacc"


def test_values_from_toml(tmp_path: Path) -> None:
    app = _app(tmp_path, """
[websocket]
max_message_bytes = 1024
messages_per_second = 2.5
heartbeat_seconds = 5
allowed_origins = ["https://Example.com", "http://localhost:3000"]

[auth]
secret = "s3cret"
token_ttl_seconds = 60
""")
    config = load_config(app, environ={})
    assert config.websocket.max_message_bytes == 1024
    assert config.websocket.messages_per_second == 2.5
    assert config.websocket.heartbeat_seconds == 5.0
    assert isinstance(config.websocket.heartbeat_seconds, float)
    assert config.websocket.allowed_origins == ("https://example.com", "http://localhost:3000")
    assert config.auth == AuthConfig("s3cret", 60, tmp_path / ".jacc" / "users.db")


def test_explicit_config_file_replaces_the_one_beside_the_app(tmp_path: Path) -> None:
    app = _app(tmp_path, "[websocket]\nsend_queue_bytes = 1\n")
    other = tmp_path / "other.toml"
    other.write_text("[websocket]\nsend_queue_bytes = 2\n")
    assert load_config(app, other, environ={}).websocket.send_queue_bytes == 2


def test_environment_overrides_toml(tmp_path: Path) -> None:
    app = _app(tmp_path, "[websocket]\nmax_message_bytes = 1024\n[auth]\nsecret = \"file\"\n")
    environ = {
        "JACC_WEBSOCKET_MAX_MESSAGE_BYTES": "1048576",
        "JACC_WEBSOCKET_HEARTBEAT_SECONDS": "0.5",
        "JACC_WEBSOCKET_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "JACC_AUTH_SECRET": "env",
        "JACC_AUTH_TOKEN_TTL_SECONDS": "120",
        "JACC_SERVER_PORT": "9000",
        "JACC_SERVER_HOST": "0.0.0.0",
        "JACC_SERVER_DEV": "yes",
        "JACC_JWT_SECRET": "not config: auth reads it itself",
        "JACC_SOMETHING_ELSE": "ignored",
    }
    config = load_config(app, environ=environ)
    assert config.websocket.max_message_bytes == 1048576
    assert config.websocket.heartbeat_seconds == 0.5
    assert config.websocket.allowed_origins == ("https://a.example", "https://b.example")
    assert config.auth.secret == "env" and config.auth.token_ttl_seconds == 120
    assert config.server == ServerConfig(host="0.0.0.0", port=9000, dev=True)


@pytest.mark.parametrize("text, expected", [
    ('["https://a.example", "https://b.example"]', ("https://a.example", "https://b.example")),
    ("['https://a.example']", ("https://a.example",)),
    ("*", ("*",)),
    ("", ()),
])
def test_allowed_origins_from_environment(tmp_path: Path, text: str,
                                          expected: tuple[str, ...]) -> None:
    environ = {"JACC_WEBSOCKET_ALLOWED_ORIGINS": text}
    assert load_config(_app(tmp_path), environ=environ).websocket.allowed_origins == expected


@pytest.mark.parametrize("text, expected", [
    ("1", True), ("TRUE", True), ("yes", True), ("0", False), ("false", False), ("No", False),
])
def test_booleans_from_environment(tmp_path: Path, text: str, expected: bool) -> None:
    config = load_config(_app(tmp_path), environ={"JACC_SERVER_DEV": text})
    assert config.server.dev is expected


def test_overrides_override_environment(tmp_path: Path) -> None:
    app = _app(tmp_path, "[websocket]\nheartbeat_seconds = 10\n")
    environ = {"JACC_SERVER_PORT": "9000", "JACC_WEBSOCKET_HEARTBEAT_SECONDS": "20"}
    overrides = {"server.port": 9100, "server.host": "::1",
                 "server.dev": True, "websocket.heartbeat_seconds": 3}
    config = load_config(app, environ=environ, overrides=overrides)
    assert config.server == ServerConfig(host="::1", port=9100, dev=True)
    assert config.websocket.heartbeat_seconds == 3.0


def test_none_override_means_not_given(tmp_path: Path) -> None:
    environ = {"JACC_SERVER_PORT": "9000"}
    overrides = {"server.port": None, "server.host": None, "server.dev": None}
    config = load_config(_app(tmp_path), environ=environ, overrides=overrides)
    assert config.server.port == 9000 and config.server.host == "127.0.0.1"


def test_unknown_override_is_a_caller_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="server.prot"):
        load_config(_app(tmp_path), environ={}, overrides={"server.prot": 1})


def test_a_bad_value_that_is_overridden_is_not_an_error(tmp_path: Path) -> None:
    app = _app(tmp_path, "[websocket]\nmax_message_bytes = 0\n")
    environ = {"JACC_WEBSOCKET_MAX_MESSAGE_BYTES": "10"}
    assert load_config(app, environ=environ).websocket.max_message_bytes == 10


# --- paths --------------------------------------------------------------------------


def test_database_is_resolved_beside_the_app_not_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    app = _app(project, '[auth]\ndatabase = "data/accounts.db"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("project/app.jac"), environ={})
    assert config.app_dir == project
    assert config.auth.database == project / "data" / "accounts.db"
    assert load_config(app, environ={"JACC_AUTH_DATABASE": "/abs/users.db"}).auth.database \
        == Path("/abs/users.db")


def test_default_database_is_in_the_state_folder(tmp_path: Path) -> None:
    config = load_config(_app(tmp_path), environ={})
    assert config.auth.database == config.state_dir / "users.db"
    assert config.auth.database.is_absolute()


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    error = _error(_app(tmp_path), config_file=tmp_path / "nope.toml")
    assert "nope.toml" in str(error) and "no such file" in str(error)
    assert error.source == "--config"


# --- bad values ---------------------------------------------------------------------


def test_zero_from_environment_names_key_and_variable(tmp_path: Path) -> None:
    error = _error(_app(tmp_path), environ={"JACC_WEBSOCKET_MAX_MESSAGE_BYTES": "0"})
    assert str(error) == ("config: websocket.max_message_bytes must be an integer > 0, "
                          "got 0 (from JACC_WEBSOCKET_MAX_MESSAGE_BYTES)")
    assert error.key == "websocket.max_message_bytes"


@pytest.mark.parametrize("line, key", [
    ("max_message_bytes = 0", "websocket.max_message_bytes"),
    ("send_queue_bytes = -1", "websocket.send_queue_bytes"),
    ("heartbeat_seconds = 0", "websocket.heartbeat_seconds"),
    ("messages_per_second = -0.5", "websocket.messages_per_second"),
    ("walker_timeout_seconds = inf", "websocket.walker_timeout_seconds"),
    ("send_timeout_seconds = nan", "websocket.send_timeout_seconds"),
])
def test_zero_negative_and_non_finite_values_in_toml(tmp_path: Path, line: str, key: str) -> None:
    app = _app(tmp_path, f"\n[websocket]\n{line}\n")
    error = _error(app)
    assert error.key == key
    assert str(error).startswith(f"config: {key} must be ")
    assert str(error).endswith(f"(from {tmp_path / 'jacc.toml'}:3)")


def test_not_a_number(tmp_path: Path) -> None:
    error = _error(_app(tmp_path), environ={"JACC_WEBSOCKET_HEARTBEAT_SECONDS": "soon"})
    assert str(error) == ('config: websocket.heartbeat_seconds must be a number > 0, '
                          'got "soon" (from JACC_WEBSOCKET_HEARTBEAT_SECONDS)')
    error = _error(_app(tmp_path, '[websocket]\nmax_message_bytes = "big"\n'))
    assert 'got "big"' in str(error)


@pytest.mark.parametrize("toml, got", [
    ("[websocket]\nmax_message_bytes = true\n", "got true"),
    ("[websocket]\nmax_message_bytes = 1.5\n", "got 1.5"),
    ("[auth]\ntoken_ttl_seconds = false\n", "got false"),
])
def test_bool_or_float_for_an_integer(tmp_path: Path, toml: str, got: str) -> None:
    error = _error(_app(tmp_path, toml))
    assert "must be an integer > 0" in str(error) and got in str(error)


def test_bool_or_float_for_an_integer_from_environment_and_flags(tmp_path: Path) -> None:
    error = _error(_app(tmp_path), environ={"JACC_AUTH_TOKEN_TTL_SECONDS": "1.5"})
    assert error.key == "auth.token_ttl_seconds" and "got \"1.5\"" in str(error)
    error = _error(_app(tmp_path), overrides={"server.port": True})
    assert str(error) == ("config: server.port must be an integer from 1 to 65535, got true "
                          "(from --port)")


@pytest.mark.parametrize("overrides, key, source", [
    ({"server.port": 0}, "server.port", "--port"),
    ({"server.port": 65536}, "server.port", "--port"),
    ({"server.host": " "}, "server.host", "--host"),
    ({"server.dev": "maybe"}, "server.dev", "--dev"),
])
def test_bad_server_values(tmp_path: Path, overrides: dict[str, object], key: str,
                           source: str) -> None:
    error = _error(_app(tmp_path), overrides=overrides)
    assert error.key == key and str(error).endswith(f"(from {source})")


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "[websocket]\nmax_mesage_bytes = 10\n"))
    assert error.key == "websocket.max_mesage_bytes"
    assert "unknown key websocket.max_mesage_bytes" in str(error)
    assert "did you mean websocket.max_message_bytes?" in str(error)


def test_key_in_the_wrong_section(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "[websocket]\ntoken_ttl_seconds = 10\n"))
    assert "did you mean auth.token_ttl_seconds" in str(error)


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "[auth]\nzzz = 1\n"))
    assert "unknown key auth.zzz" in str(error) and "did you mean" not in str(error)


def test_unknown_variable_with_suggestion(tmp_path: Path) -> None:
    error = _error(_app(tmp_path), environ={"JACC_SERVER_PROT": "80"})
    assert str(error) == ("config: unknown key server.prot, did you mean JACC_SERVER_PORT? "
                          "(from JACC_SERVER_PROT)")


def test_unknown_section(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "[websockets]\nbackplane = \"memory\"\n"))
    assert error.key == "websockets"
    assert "unknown section [websockets], did you mean [websocket]?" in str(error)


@pytest.mark.parametrize("key, value, flag", [("port", "80", "--port"),
                                               ("host", '"0.0.0.0"', "--host"),
                                               ("dev", "true", "--dev")])
def test_where_to_serve_is_not_read_from_the_file(tmp_path: Path, key: str, value: str,
                                                  flag: str) -> None:
    error = _error(_app(tmp_path, f"[server]\n{key} = {value}\n"))
    assert error.key == f"server.{key}"
    assert str(error).startswith(f"config: server.{key} is not read from the config file; "
                                 f"use {flag} or JACC_SERVER_{key.upper()}")


def test_server_limits_are_read_from_the_file(tmp_path: Path) -> None:
    config = load_config(_app(tmp_path, """
[server]
max_body_bytes = 2048
max_header_bytes = 4096
handshake_timeout_seconds = 2.5
max_connections = 50
"""), environ={})
    assert config.server == ServerConfig(max_body_bytes=2048, max_header_bytes=4096,
                                         handshake_timeout_seconds=2.5, max_connections=50)


@pytest.mark.parametrize("key", ["max_body_bytes", "max_header_bytes", "max_connections"])
def test_server_limits_are_counts(tmp_path: Path, key: str) -> None:
    error = _error(_app(tmp_path), environ={f"JACC_SERVER_{key.upper()}": "0"})
    assert str(error) == (f"config: server.{key} must be an integer > 0, got 0 "
                          f"(from JACC_SERVER_{key.upper()})")


def test_a_server_limit_in_the_wrong_section_is_pointed_to_server(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "[websocket]\nmax_body_bytes = 10\n"))
    assert "did you mean server.max_body_bytes (in [server])?" in str(error)


def test_per_ip_cap_from_the_environment(tmp_path: Path) -> None:
    config = load_config(_app(tmp_path),
                         environ={"JACC_WEBSOCKET_MAX_CONNECTIONS_PER_IP": "3"})
    assert config.websocket.max_connections_per_ip == 3


def test_console_is_read_from_the_file(tmp_path: Path) -> None:
    # Whether the app shows a console is the app's decision, unlike host, port and dev.
    config = load_config(_app(tmp_path, "[server]\nconsole = false\n"), environ={})
    assert config.server.console is False
    assert load_config(_app(tmp_path, ""), environ={}).server.console is True


def test_console_from_the_environment_overrides_the_file(tmp_path: Path) -> None:
    app = _app(tmp_path, "[server]\nconsole = false\n")
    assert load_config(app, environ={"JACC_SERVER_CONSOLE": "1"}).server.console is True


def test_console_must_be_a_boolean(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "[server]\nconsole = 1\n"))
    assert error.key == "server.console" and "true or false" in str(error)


def test_key_outside_any_section(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "heartbeat_seconds = 5\n"))
    assert "did you mean websocket.heartbeat_seconds?" in str(error)


def test_scale_out_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "chat.jac", environ={})
    assert config.websocket.backplane == "memory"
    assert config.websocket.history == 1000
    assert config.server.workers == 1
    # Named after the app, not its folder: every host must arrive at the same keys.
    assert config.websocket.backplane_namespace == "jacc:chat"


def test_scale_out_settings(tmp_path: Path) -> None:
    app = _app(tmp_path, """
[websocket]
backplane = "redis://127.0.0.1:6379/2"
history = 0
backplane_namespace = "shop:eu"
""")
    config = load_config(app, environ={"JACC_SERVER_WORKERS": "4"})
    assert config.websocket.backplane == "redis://127.0.0.1:6379/2"
    assert config.websocket.history == 0  # 0 turns resume off
    assert config.websocket.backplane_namespace == "shop:eu"
    assert config.server.workers == 4


@pytest.mark.parametrize("url", ["redis://h", "rediss://u:p@h:6380/1", "unix:///tmp/redis.sock"])
def test_backplane_urls(tmp_path: Path, url: str) -> None:
    config = load_config(_app(tmp_path), environ={"JACC_WEBSOCKET_BACKPLANE": url})
    assert config.websocket.backplane == url


@pytest.mark.parametrize("value", ["kafka://h:9092", "redis://", "127.0.0.1:6379", ""])
def test_a_backplane_that_is_not_redis(tmp_path: Path, value: str) -> None:
    error = _error(_app(tmp_path), environ={"JACC_WEBSOCKET_BACKPLANE": value})
    assert error.key == "websocket.backplane"
    assert 'must be "memory" or a Redis URL' in str(error)


def test_a_backplane_password_is_never_echoed(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, '[websocket]\nbackplane = "redis+x://:hunter2@h"\n'))
    assert "hunter2" not in str(error) and ":***@h" in str(error)


def test_history_may_be_zero_but_not_negative(tmp_path: Path) -> None:
    error = _error(_app(tmp_path), environ={"JACC_WEBSOCKET_HISTORY": "-1"})
    assert "websocket.history must be an integer >= 0, got -1" in str(error)


@pytest.mark.parametrize("value", ['"two words"', '"' + "x" * 101 + '"', "3"])
def test_a_bad_namespace(tmp_path: Path, value: str) -> None:
    error = _error(_app(tmp_path, f"[websocket]\nbackplane_namespace = {value}\n"))
    assert error.key == "websocket.backplane_namespace"


def test_workers_are_not_read_from_the_file(tmp_path: Path) -> None:
    # How many processes one machine runs is the machine's business, like its port.
    error = _error(_app(tmp_path, "[server]\nworkers = 2\n"))
    assert "use --workers or JACC_SERVER_WORKERS" in str(error)


def test_workers_must_be_positive(tmp_path: Path) -> None:
    error = _error(_app(tmp_path), overrides={"server.workers": 0})
    assert "server.workers must be an integer > 0, got 0 (from --workers)" in str(error)


def test_secret_is_never_echoed(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "[auth]\nsecret = 123456\n"))
    assert str(error).startswith("config: auth.secret must be a string, got an integer")
    assert "123456" not in str(error)


@pytest.mark.parametrize("origin", ["https://a.example/", "a.example", "https://a.example/x", 5])
def test_bad_origins(tmp_path: Path, origin: object) -> None:
    toml = f"[websocket]\nallowed_origins = [{origin!r}]\n".replace("'", '"')
    error = _error(_app(tmp_path, toml))
    assert error.key == "websocket.allowed_origins" and "no path" in str(error)


def test_origins_are_spelled_as_browsers_send_them(tmp_path: Path) -> None:
    environ = {"JACC_WEBSOCKET_ALLOWED_ORIGINS": "HTTPS://App.Example:443,http://x:8080"}
    config = load_config(_app(tmp_path), environ=environ)
    assert config.websocket.allowed_origins == ("https://app.example", "http://x:8080")


def test_an_ipv6_origin_keeps_its_brackets(tmp_path: Path) -> None:
    environ = {"JACC_WEBSOCKET_ALLOWED_ORIGINS": "http://[::1]:8000,https://[::1]:443"}
    config = load_config(_app(tmp_path), environ=environ)
    assert config.websocket.allowed_origins == ("http://[::1]:8000", "https://[::1]")


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "\n[websocket]\nmax_message_bytes = = 3\n"))
    assert str(error).startswith(f"config: {tmp_path / 'jacc.toml'}:3:")
    assert "invalid TOML" in str(error)


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    error = _error(_app(tmp_path, "websocket = 3\n"))
    assert error.key == "websocket" and "must be a table" in str(error)


def test_config_is_frozen(tmp_path: Path) -> None:
    config: Config = load_config(_app(tmp_path), environ={})
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


def test_every_key_is_in_the_configuration_docs() -> None:
    # Derived from the dataclasses, so that a new key cannot go undocumented.
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    for section, table in config_module._SECTIONS.items():
        assert f"## `[{section}]`" in docs
        for field in dataclasses.fields(table):
            assert f"| `{field.name}` |" in docs, f"{section}.{field.name}"


# --- [auth] login throttling and token rotation ------------------------------------


def test_login_and_refresh_settings(tmp_path: Path) -> None:
    config = load_config(_app(tmp_path), environ={})
    assert (config.auth.login_attempts, config.auth.login_address_attempts) == (5, 20)
    assert config.auth.login_window_seconds == 900.0 and config.auth.login_backoff_seconds == 1.0
    assert config.auth.login_throttle_entries == 10000
    assert config.auth.refresh_grace_seconds == 30.0
    app = _app(tmp_path, "[auth]\nlogin_attempts = 3\nrefresh_grace_seconds = 0\n")
    config = load_config(app, environ={"JACC_AUTH_LOGIN_BACKOFF_SECONDS": "0.5"})
    assert config.auth.login_attempts == 3 and config.auth.refresh_grace_seconds == 0.0
    assert config.auth.login_backoff_seconds == 0.5


@pytest.mark.parametrize("toml, want", [
    ("[auth]\nrefresh_grace_seconds = -1\n", "a number >= 0, got -1"),
    ("[auth]\nrefresh_grace_seconds = nan\n", "a number >= 0, got nan"),
    ("[auth]\nlogin_attempts = 0\n", "an integer > 0, got 0"),
    ("[auth]\nlogin_window_seconds = 0\n", "a number > 0, got 0"),
    ("[auth]\nlogin_throttle_entries = 1.5\n", "an integer > 0, got 1.5"),
])
def test_bad_login_and_refresh_settings(tmp_path: Path, toml: str, want: str) -> None:
    assert want in str(_error(_app(tmp_path, toml)))


def test_drain_seconds_from_environment(tmp_path: Path) -> None:
    assert load_config(_app(tmp_path), environ={}).server.drain_seconds == 5.0
    environ = {"JACC_SERVER_DRAIN_SECONDS": "2.5"}
    assert load_config(_app(tmp_path), environ=environ).server.drain_seconds == 2.5
    with pytest.raises(ConfigError, match="server.drain_seconds must be a number > 0, got 0"):
        load_config(_app(tmp_path), environ={"JACC_SERVER_DRAIN_SECONDS": "0"})


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.0/8, 127.0.0.1", ("10.0.0.0/8", "127.0.0.1")),
    ('["::1", "fd00::/8"]', ("::1", "fd00::/8")),
    ("*", ("*",)),
])
def test_forwarded_allow_ips_take_addresses_and_networks(tmp_path: Path, text: str,
                                                         expected: tuple[str, ...]) -> None:
    environ = {"JACC_SERVER_FORWARDED_ALLOW_IPS": text}
    assert load_config(_app(tmp_path), environ=environ).server.forwarded_allow_ips == expected


@pytest.mark.parametrize("text", ["nginx", "10.0.0.1/8", "*, 10.0.0.1", "", "300.1.1.1"])
def test_forwarded_allow_ips_that_would_trust_no_one_are_refused(tmp_path: Path,
                                                                 text: str) -> None:
    # uvicorn would read each of these as a literal that never matches a peer.
    with pytest.raises(ConfigError) as caught:
        load_config(_app(tmp_path), environ={"JACC_SERVER_FORWARDED_ALLOW_IPS": text})
    assert caught.value.key == "server.forwarded_allow_ips"


def test_operations_settings_defaults_and_layers(tmp_path: Path) -> None:
    app = _app(tmp_path, '[server]\nlog_format = "json"\nssl_certfile = "tls/cert.pem"\n'
                         'proxy_headers = true\nroot_path = "/chat"\nmetrics = false\n')
    server = load_config(app, environ={"JACC_SERVER_LOG_LEVEL": "WARNING"}).server
    assert (server.log_format, server.log_level, server.metrics) == ("json", "warning", False)
    assert server.ssl_certfile == tmp_path / "tls" / "cert.pem"  # beside the app
    assert server.ssl_keyfile is None and server.proxy_headers is True
    assert server.root_path == "/chat"
    environ = {"JACC_SERVER_SSL_CERTFILE": "", "JACC_SERVER_PROXY_HEADERS": "off"}
    server = load_config(app, environ=environ).server
    assert server.ssl_certfile is None and server.proxy_headers is False  # env turns off
    (tmp_path / "other").mkdir()
    defaults = load_config(_app(tmp_path / "other"), environ={}).server
    assert defaults.proxy_headers is False and defaults.forwarded_allow_ips == ("127.0.0.1",)
    assert (defaults.metrics, defaults.log_format, defaults.log_level) == (True, "text", "info")


@pytest.mark.parametrize("key, text", [
    ("JACC_SERVER_LOG_FORMAT", "xml"), ("JACC_SERVER_LOG_LEVEL", "loud"),
    ("JACC_SERVER_ROOT_PATH", "chat"), ("JACC_SERVER_ROOT_PATH", "/chat/"),
    ("JACC_SERVER_ROOT_PATH", "/a b"), ("JACC_SERVER_METRICS", "maybe"),
])
def test_bad_operations_values_name_the_key(tmp_path: Path, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_app(tmp_path), environ={key: text})
    assert caught.value.key == "server." + key.removeprefix("JACC_SERVER_").lower()


def test_send_queue_frames_is_refused_naming_its_replacement(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_app(tmp_path, "[websocket]\nsend_queue_frames = 256\n"), environ={})
    assert "replaced by websocket.send_queue_bytes" in str(caught.value)
