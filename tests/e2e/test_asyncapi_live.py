"""Each walker's (and function's) AsyncAPI request schema accepts exactly the frames a live
server runs.

Hypothesis generates frames for the walkers of apps/types.jac (every declared type the
server checks) and its WebSocket function `params`; each goes to `jacc serve` over a real WebSocket, and the answer
(INVALID_PAYLOAD or not) must match what `jsonschema` says of the frame against the
schema in the server's own /asyncapi.json.

Floats with no fractional part (`2.0`) are generated too: JSON Schema counts them
as integers, and so does the server (docs/protocol.md, "Declared types").
"""

from __future__ import annotations

import json
import math

import httpx
import jsonschema
import pytest
from e2e_support import app_source, server_env, start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

pytestmark = pytest.mark.slow  # property runs, left out of `make test-fast`

WALKERS = ["Scalars", "Containers", "Unions", "Spellings", "params"]

_floats = st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), _floats, st.text(max_size=8))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # No rate limit in the way of a few hundred frames a second.
    env = server_env(JACC_WEBSOCKET_MESSAGES_PER_SECOND="1000000")
    running = start_server(tmp_path_factory.mktemp("types"), app_source("types"), env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def document(server) -> dict:
    return httpx.get(f"{server.http}/asyncapi.json", timeout=10).json()


def _fitting(schema: dict) -> st.SearchStrategy:
    """Values of the kind `schema` names: without them most frames would be refused."""
    if "anyOf" in schema:
        return st.one_of([_fitting(member) for member in schema["anyOf"]])
    kinds = {
        "string": st.text(max_size=8),
        "integer": st.integers(),
        "number": st.one_of(st.integers(), _floats),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    kind = schema.get("type")
    if kind in kinds:
        return kinds[kind]
    if kind == "array":
        return st.lists(_fitting(schema.get("items", {})), max_size=3)
    if kind == "object":
        values = schema.get("additionalProperties")
        return st.dictionaries(st.text(max_size=5), _fitting(values) if values else _json,
                               max_size=3)
    return _json


def _frames(schema: dict) -> st.SearchStrategy[dict]:
    """Frames for one walker: each field left out, fitting, or any JSON; maybe an unknown key.

    Only the mix is biased by the schema; whether a frame fits is the server's and the
    validator's to say.
    """
    fields = [name for name in schema["properties"] if name != "token"]
    entries = [
        st.one_of(st.none(),
                  st.tuples(st.just(name), _fitting(schema["properties"][name])),
                  st.tuples(st.just(name), _fitting(schema["properties"][name])),
                  st.tuples(st.just(name), _json))
        for name in fields
    ]
    unknown = st.text(min_size=1, max_size=6).filter(lambda k: k not in schema["properties"])
    extra = st.one_of(st.just([]), st.just([]), st.lists(st.tuples(unknown, _json), max_size=1))
    return st.tuples(st.tuples(*entries), extra).map(
        lambda parts: dict([pair for pair in parts[0] if pair is not None] + parts[1]))


def _refused(ws, frame: dict) -> bool:
    ws.send(json.dumps(frame))
    answer = json.loads(ws.recv(timeout=10))
    return answer.get("ok") is False and answer["error"]["code"] == "INVALID_PAYLOAD"


@pytest.mark.parametrize("walker", WALKERS)
def test_schema_accepts_exactly_what_the_server_runs(server, document, walker: str) -> None:
    schema = document["channels"][walker]["messages"]["request"]["payload"]
    # AsyncAPI's Schema Object is a superset of JSON Schema draft 7.
    validator = jsonschema.Draft7Validator(schema)
    outcomes = {True: 0, False: 0}
    with connect(server.ws(document["channels"][walker]["address"])) as ws:

        @settings(max_examples=400, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(_frames(schema))
        def agree(frame: dict) -> None:
            accepted = validator.is_valid(frame)
            outcomes[accepted] += 1
            assert accepted == (not _refused(ws, frame)), (frame, list(validator.iter_errors(frame)))

        agree()
    # Both answers were seen, or the property says little.
    assert outcomes[True] > 30 and outcomes[False] > 30, outcomes


def test_an_integral_float_is_an_int_to_schema_and_server_alike(server, document) -> None:
    schema = document["channels"]["Scalars"]["messages"]["request"]["payload"]
    frame = {"text": "x", "whole": 2.0}
    assert math.isclose(frame["whole"], 2)
    assert jsonschema.Draft7Validator(schema).is_valid(frame)
    with connect(server.ws("/ws/walker/Scalars")) as ws:
        assert not _refused(ws, frame)
