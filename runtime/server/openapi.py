"""The OpenAPI 3.1 document of an app's HTTP routes (docs/protocol.md, "Routes").

WebSocket walkers and functions are not in it: OpenAPI has no way to describe
them, and Jac Scale leaves them out too. Each HTTP walker's (or served
function's) request body is an object whose properties are its fields (a
function's parameters), each with the JSON Schema of its declared type, taken
from the type model that also checks the fields (`fieldtypes.py`, docs/protocol.md
"Declared types"). A function's answer carries its result, whose schema comes
from its return annotation by the same model.
"""

from __future__ import annotations

import inspect
from typing import Iterable, Mapping

from ..walker import Field
from .fieldtypes import declared_type
from .protocol import WalkerBinding

_ERROR = {"$ref": "#/components/schemas/Error"}


def openapi_document(
    routes: Iterable[tuple[str, str, WalkerBinding]], *, title: str, version: str, accounts: bool
) -> dict:
    """`routes` are (method, path, binding) of every HTTP walker route."""
    paths: dict[str, dict] = {}
    for method, path, binding in routes:
        paths.setdefault(path, {})[method.lower()] = _walker_operation(binding, method)
    if accounts:
        paths.update(_account_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA, "Reports": _REPORTS_SCHEMA},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _walker_operation(binding: WalkerBinding, method: str) -> dict:
    spec = binding.spec
    schemas = {f.name: _field_schema(f) for f in spec.fields}
    body = {
        "type": "object",
        "properties": schemas,
        "additionalProperties": False,
    }
    required = [f.name for f in spec.fields if f.required]
    if required:
        body["required"] = required
    function = binding.kind == "function"
    operation: dict = {
        "operationId": f"{binding.kind}_{spec.name}",
        "summary": f"Call function {spec.name}" if function else f"Run walker {spec.name}",
        "tags": ["functions" if function else "walkers"],
        "responses": {
            "200": _json("The function's result", _result_schema(spec.returns)) if function
            else _json("The walker's reports", {"$ref": "#/components/schemas/Reports"}),
            "400": _json("Not a JSON object", _ERROR),
            "422": _json("Unknown, missing or mistyped fields", _ERROR),
            "500": _json(f"The {binding.kind} raised", _ERROR),
        },
    }
    description = _doc(binding.cls)
    if description:
        operation["description"] = description
    if method in ("GET", "DELETE"):
        operation["parameters"] = [
            {"name": f.name, "in": "query", "required": f.required, "schema": schemas[f.name]}
            for f in spec.fields
        ]
    else:
        operation["requestBody"] = {
            "required": bool(required),
            "content": {"application/json": {"schema": body}},
        }
    if not spec.public:
        operation["security"] = [{"bearerAuth": []}]
        operation["responses"]["401"] = _json("Missing, invalid or expired token", _ERROR)
    return operation


def _field_schema(field: Field) -> dict:
    schema = declared_type(field.type).json_schema()
    # The docstring written before the field's `has` (docs/language.md, "Docstrings").
    return {**schema, "description": inspect.cleandoc(field.doc)} if field.doc else schema


def _doc(cls: type) -> str:
    # The walker's own docstring (the one written before `walker`), not a base's.
    text = cls.__dict__.get("__doc__")
    return inspect.cleandoc(text) if isinstance(text, str) else ""


def _json(description: str, schema: Mapping) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["ok", "error"],
    "properties": {
        "ok": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "reason": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}

_REPORTS_SCHEMA = {
    "type": "object",
    "required": ["ok", "data"],
    "properties": {
        "ok": {"const": True},
        "data": {
            "type": "object",
            "required": ["reports"],
            "properties": {"reports": {"type": "array"}},
        },
    },
}


def _result_schema(returns: str) -> dict:
    # `{"ok":true,"data":{"result":VALUE}}`; VALUE's schema from the return annotation.
    result = declared_type(returns).json_schema() if returns else {}
    return {
        "type": "object",
        "required": ["ok", "data"],
        "properties": {
            "ok": {"const": True},
            "data": {"type": "object", "required": ["result"], "properties": {"result": result}},
        },
    }


def _ok(data: dict) -> dict:
    return {
        "type": "object",
        "properties": {"ok": {"const": True}, "data": {"type": "object", "properties": data}},
    }


def _account_paths() -> dict:
    username = {
        "type": "object",
        "required": ["type", "value"],
        "properties": {"type": {"const": "username"}, "value": {"type": "string"}},
    }
    password = {
        "type": "object",
        "required": ["type", "password"],
        "properties": {"type": {"const": "password"}, "password": {"type": "string"}},
    }
    string = {"type": "string"}

    def operation(summary: str, body: dict, ok_status: str, ok: dict, errors: dict) -> dict:
        responses = {ok_status: _json("Success", _ok(ok))}
        responses.update({status: _json(text, _ERROR) for status, text in errors.items()})
        return {
            "post": {
                "summary": summary,
                "tags": ["accounts"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": responses,
            }
        }

    malformed = {"400": "Not JSON", "422": "Malformed body"}
    return {
        "/user/register": operation(
            "Create an account",
            {
                "type": "object",
                "required": ["identities", "credential"],
                "properties": {
                    "identities": {"type": "array", "items": username, "minItems": 1},
                    "credential": password,
                },
            },
            "201",
            {"user_id": string, "message": string},
            {**malformed, "400": "Not JSON, or the username is taken (IDENTITY_TAKEN)"},
        ),
        "/user/login": operation(
            "Log in and get a token",
            {
                "type": "object",
                "required": ["identity", "credential"],
                "properties": {"identity": username, "credential": password},
            },
            "200",
            {"user_id": string, "token": string},
            {**malformed, "401": "Wrong username or password"},
        ),
        "/user/refresh-token": operation(
            "Exchange a valid token for a fresh one",
            {"type": "object", "required": ["token"], "properties": {"token": string}},
            "200",
            {"user_id": string, "token": string},
            {**malformed, "401": "Invalid or expired token"},
        ),
    }
