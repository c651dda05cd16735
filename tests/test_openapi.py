"""The OpenAPI document (runtime/server/openapi.py): field schemas come from the type model."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from jacc_runtime import Walker, entry, field, report
from jacc_runtime.server.fieldtypes import declared_type
from jacc_runtime.server.openapi import openapi_document
from jacc_runtime.server.protocol import ProtocolError, WalkerBinding


class Search(Walker, public=True):
    note = field("typing.Optional[str]")
    ids = field("typing.List[int]", list)
    scores = field("dict[str, float | None]", dict)
    extra = field("MyClass", lambda: None)

    @entry
    async def run(self):
        report(self, self.ids)


class Lookup(Walker, method="GET"):
    limit = field("Optional[int]", lambda: None)


def _document(*routes: tuple[str, type[Walker]]) -> dict:
    bound = [(method, f"/walker/{cls.__name__}", WalkerBinding(cls)) for method, cls in routes]
    return openapi_document(bound, title="test", version="1", accounts=False)


def _body_schema(document: dict, name: str) -> dict:
    operation = document["paths"][f"/walker/{name}"]["post"]
    return operation["requestBody"]["content"]["application/json"]["schema"]


class Documented(Walker, public=True):
    """Finds things.

    Indented lines are cleaned, as Python's help() does."""

    query = field("str", doc="What to look for.")
    limit = field("int", lambda: 10)


def test_docstrings_become_descriptions() -> None:
    # The walker's docstring describes the operation; a field's, its schema.
    operation = _document(("POST", Documented))["paths"]["/walker/Documented"]["post"]
    assert operation["description"] == "Finds things.\n\nIndented lines are cleaned, as " \
        "Python's help() does."
    properties = _body_schema(_document(("POST", Documented)), "Documented")["properties"]
    assert properties["query"] == {"type": "string", "description": "What to look for."}
    assert properties["limit"] == {"type": "integer"}
    lookup = _document(("GET", Lookup))["paths"]["/walker/Lookup"]["get"]
    assert "description" not in lookup


def test_typing_spellings_get_a_real_schema() -> None:
    properties = _body_schema(_document(("POST", Search)), "Search")["properties"]
    assert properties["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert properties["ids"] == {"type": "array", "items": {"type": "integer"}}
    assert properties["scores"] == {
        "type": "object",
        "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    }
    assert properties["extra"] == {}


def test_every_field_schema_is_the_models() -> None:
    body = _body_schema(_document(("POST", Search)), "Search")
    fields = Search.__jacc_spec__.fields
    assert body["properties"] == {f.name: declared_type(f.type).json_schema() for f in fields}
    assert body["required"] == ["note"]
    Draft202012Validator.check_schema(body)


def test_query_parameters_take_the_same_schemas() -> None:
    operation = _document(("GET", Lookup))["paths"]["/walker/Lookup"]["get"]
    assert operation["parameters"] == [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        }
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {"note": None},
        {"note": "x", "ids": [1, 2], "scores": {"a": 1.5, "b": None}, "extra": [1]},
        {"note": "x", "ids": [1, "2"]},
        {"note": 3},
        {"ids": []},
        {"note": "x", "scores": {"a": "high"}},
        {"note": "x", "colour": "red"},
    ],
)
def test_the_documented_body_accepts_what_the_server_accepts(payload: dict) -> None:
    body = _body_schema(_document(("POST", Search)), "Search")
    try:
        WalkerBinding(Search).check(payload)
        accepted = True
    except ProtocolError:
        accepted = False
    assert Draft202012Validator(body).is_valid(payload) == accepted
