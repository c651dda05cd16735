"""The AsyncAPI document (runtime/server/asyncapi.py) and `jacc asyncapi`.

The official parser's verdict is tests/test_asyncapi_parser.py; agreement with a live
server's field checks is tests/e2e/test_asyncapi_live.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from jacc_runtime import Walker, entry, field, report
from jacc_runtime.server import protocol
from jacc_runtime.server.asyncapi import (
    CLOSE_MEANINGS,
    ERROR_CODES,
    asyncapi_document,
    request_schema,
)
from jacc_runtime.server.fieldtypes import declared_type
from jacc_runtime.walker import WalkerSpec

from jacc import __version__
from jacc.cli import load_program, main

REPO = Path(__file__).resolve().parent.parent
CHAT = REPO / "samples" / "chat.jac"
EXTRAS = REPO / "tests" / "e2e" / "apps" / "extras.jac"


def _document(path: Path = CHAT, **kwargs) -> dict:
    return asyncapi_document(load_program(path), title=path.stem, version="1", **kwargs)


def test_one_channel_per_websocket_walker_at_its_canonical_route() -> None:
    document = _document()
    assert document["asyncapi"] == "3.0.0"
    # Stats is an HTTP walker: /openapi.json has it, this document does not.
    assert list(document["channels"]) == ["ChatRoom", "History", "EchoMessage", "TeamChat"]
    chat = document["channels"]["ChatRoom"]
    assert chat["address"] == "/ws/walker/ChatRoom"
    assert chat["x-jacc-aliases"] == ["/ws/ChatRoom"]
    assert "/ws/ChatRoom" in chat["summary"]
    assert set(document["operations"]) == {
        f"{name}.{action}" for name in document["channels"] for action in ("receive", "send")
    }


def test_walker_docstrings_become_descriptions() -> None:
    channels = _document()["channels"]
    assert channels["ChatRoom"]["description"] == (
        "Everyone connected to /ws/ChatRoom receives every message.")


def test_a_walker_without_a_docstring_has_no_description() -> None:
    class Quiet(Walker, protocol="websocket", public=True):
        @entry
        async def run(self):
            report(self, 1)

    channel = asyncapi_document([Quiet], title="t", version="1")["channels"]["Quiet"]
    assert "description" not in channel


def test_field_docstrings_become_property_descriptions(tmp_path: Path) -> None:
    # A docstring stands before the `has` it documents (docs/language.md, "Docstrings").
    app = tmp_path / "app.jac"
    app.write_text('\n"""The app."""\n\n"""Shouts."""\n'
                   '@restspec(protocol=APIProtocol.WEBSOCKET)\nasync walker : pub Shout {\n'
                   '    """\n    What to shout,\n    indented.\n    """\n    has words: str;\n'
                   '    has times: int = 1;\n}\n', encoding="utf-8")
    channel = _document(app)["channels"]["Shout"]
    assert channel["description"] == "Shouts."
    properties = channel["messages"]["request"]["payload"]["properties"]
    assert properties["words"]["description"] == "What to shout,\nindented."
    assert "description" not in properties["times"]
    assert properties["words"]["type"] == "string"


def test_request_schema_comes_from_the_declared_types() -> None:
    payload = _document()["channels"]["ChatRoom"]["messages"]["request"]["payload"]
    assert payload["required"] == ["message"]
    assert payload["additionalProperties"] is False
    assert payload["properties"]["message"] == {"type": "string", "x-jacc-type": "str",
                                                "description": "What to say."}
    assert payload["properties"]["sender"]["default"] == "anonymous"
    # `token` may come in any frame and is taken out before the walker sees the fields.
    assert "token" in payload["properties"]


def test_field_schemas_are_the_type_models_own() -> None:
    # The one type model: what openapi.py writes for the same declared type, plus the text.
    for cls in load_program(REPO / "tests" / "e2e" / "apps" / "types.jac"):
        schema = request_schema(cls.__jacc_spec__)
        for item in cls.__jacc_spec__.fields:
            shown = {k: v for k, v in schema["properties"][item.name].items()
                     if k not in ("x-jacc-type", "default")}
            assert shown == declared_type(item.type).json_schema(), item


def test_defaults_are_fresh_json_and_skipped_when_json_cannot_hold_them() -> None:
    class Defaults(Walker, protocol="websocket", public=True):
        tags = field("list[str]", lambda: ["a"])
        odd = field("set", lambda: {1, 2})
        broken = field("int", lambda: 1 // 0)

        @entry
        async def run(self):
            report(self, 1)

    properties = request_schema(Defaults.__jacc_spec__)["properties"]
    assert properties["tags"]["default"] == ["a"]
    assert "default" not in properties["odd"]
    assert "default" not in properties["broken"]


def test_error_codes_are_the_codes_table_less_the_http_only_ones() -> None:
    # ... and less STREAM_ERROR, which only a stream's done frame carries.
    frame_codes = set(protocol.HTTP_STATUS) - protocol.HTTP_ONLY_CODES - {protocol.STREAM_ERROR}
    assert protocol.HTTP_ONLY_CODES <= set(protocol.HTTP_STATUS)
    assert set(ERROR_CODES) == frame_codes
    error = _document()["components"]["messages"]["error"]["payload"]
    assert error["properties"]["error"]["properties"]["code"]["enum"] == list(ERROR_CODES)


def test_every_close_code_has_a_meaning() -> None:
    constants = {value for name, value in vars(protocol).items()
                 if name.startswith("CLOSE_") and isinstance(value, int)}
    assert constants <= set(CLOSE_MEANINGS)
    shown = _document()["x-jacc-close-codes"]
    assert shown["4401"].startswith("unauthorized")
    assert set(shown) == {str(code) for code in CLOSE_MEANINGS}


def test_broadcast_success_is_sent_not_replied() -> None:
    operations = _document()["operations"]
    chat_reply = [m["$ref"] for m in operations["ChatRoom.receive"]["reply"]["messages"]]
    assert "#/channels/ChatRoom/messages/reply" not in chat_reply
    assert "#/channels/ChatRoom/messages/error" in chat_reply
    chat_send = [m["$ref"] for m in operations["ChatRoom.send"]["messages"]]
    assert "#/channels/ChatRoom/messages/reply" in chat_send
    echo_reply = [m["$ref"] for m in operations["EchoMessage.receive"]["reply"]["messages"]]
    assert "#/channels/EchoMessage/messages/reply" in echo_reply
    assert operations["ChatRoom.send"]["x-jacc-broadcast"] is True
    assert _document()["channels"]["ChatRoom"]["x-jacc-broadcast"] is True
    assert _document()["channels"]["History"]["x-jacc-broadcast"] is False


def test_private_walkers_need_the_token_scheme() -> None:
    document = _document()
    operations, channels = document["operations"], document["channels"]
    assert operations["TeamChat.receive"]["security"] == [
        {"$ref": "#/components/securitySchemes/token"}]
    assert "security" not in operations["EchoMessage.receive"]
    assert channels["TeamChat"]["x-jacc-public"] is False
    assert channels["EchoMessage"]["x-jacc-public"] is True
    scheme = document["components"]["securitySchemes"]["token"]
    assert scheme["in"] == "query" and "first frame" in scheme["description"]


def test_a_walker_with_a_type_field_has_no_control_frames() -> None:
    channels = _document(EXTRAS)["channels"]
    assert "ping" not in channels["Typed"]["messages"]
    assert "ping" in channels["Boom"]["messages"]


def test_streaming_walkers_get_chunk_and_done() -> None:
    class Counter:
        __jacc_spec__ = WalkerSpec(name="Counter", protocol="websocket", public=True,
                                   stream=True)

    document = asyncapi_document([Counter], title="t", version="1")
    messages = document["channels"]["Counter"]["messages"]
    assert {"chunk", "done"} <= set(messages) and "reply" not in messages
    assert document["channels"]["Counter"]["x-jacc-stream"] is True
    replies = [m["$ref"] for m in document["operations"]["Counter.receive"]["reply"]["messages"]]
    assert "#/channels/Counter/messages/done" in replies
    assert "chunk" not in _document()["channels"]["ChatRoom"]["messages"]


def test_websocket_functions_are_channels_of_their_own() -> None:
    import jacc_runtime

    @jacc_runtime.function(protocol="websocket", public=True)
    def ws_echo(message: "str", client_id: "str" = "anonymous") -> "dict":
        """Echoes a message."""
        return {}

    @jacc_runtime.function(protocol="websocket")
    async def words(text: "str"):
        yield text

    @jacc_runtime.function()
    def add(a: "int") -> "int":
        return a

    document = asyncapi_document([ws_echo, words, add], title="t", version="1")
    channels = document["channels"]
    assert set(channels) == {"ws_echo", "words"}  # an HTTP function is in /openapi.json
    echo = channels["ws_echo"]
    assert (echo["address"], echo["x-jacc-kind"], echo["x-jacc-aliases"]) == (
        "/ws/function/ws_echo", "function", [])
    assert echo["description"] == "Echoes a message."
    assert {"request", "result", "error", "ping"} <= set(echo["messages"])
    payload = echo["messages"]["request"]["payload"]
    assert payload["required"] == ["message"]
    assert payload["properties"]["client_id"]["default"] == "anonymous"
    assert {"chunk", "done"} <= set(channels["words"]["messages"])
    assert "result" not in channels["words"]["messages"]
    assert document["operations"]["words.receive"]["security"]  # not public: a token


def test_server_entry_only_when_a_host_is_known() -> None:
    assert "servers" not in _document()
    servers = _document(host="example.test:443", secure=True)["servers"]
    assert servers == {"jacc": {"host": "example.test:443", "protocol": "wss",
                                "description": "jacc serve"}}


def test_cli_prints_the_document(capsys) -> None:
    assert main(["asyncapi", str(CHAT)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == asyncapi_document(load_program(CHAT), title="chat", version=__version__)


def test_cli_adds_a_server(capsys) -> None:
    assert main(["asyncapi", str(CHAT), "--server", "127.0.0.1:9000"]) == 0
    assert json.loads(capsys.readouterr().out)["servers"]["jacc"]["host"] == "127.0.0.1:9000"


def test_cli_on_a_program_with_errors_exits_1(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jac"
    bad.write_text("\nwalker W { has x: int }\n", encoding="utf-8")
    assert main(["asyncapi", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "error[" in captured.err
