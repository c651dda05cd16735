"""The OpenAPI 3.1 document of an app's HTTP routes (SPEC §5).

WebSocket walkers are not in it: OpenAPI has no way to describe them, and
Jac Scale leaves them out too. Each HTTP walker's request body is an object
whose properties are its fields, typed from their declared Jac types.
"""

from __future__ import annotations

import ast
from typing import Iterable, Mapping

from .protocol import WalkerBinding

_ERROR = {"$ref": "#/components/schemas/Error"}
_SCALARS = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array"},
    "List": {"type": "array"},
    "dict": {"type": "object"},
    "Dict": {"type": "object"},
    "None": {"type": "null"},
}


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
    body = {
        "type": "object",
        "properties": {f.name: schema_of(f.type) for f in spec.fields},
        "additionalProperties": False,
    }
    required = [f.name for f in spec.fields if f.required]
    if required:
        body["required"] = required
    operation: dict = {
        "operationId": f"walker_{spec.name}",
        "summary": f"Run walker {spec.name}",
        "tags": ["walkers"],
        "responses": {
            "200": _json("The walker's reports", {"$ref": "#/components/schemas/Reports"}),
            "400": _json("Not a JSON object", _ERROR),
            "422": _json("Unknown, missing or mistyped fields", _ERROR),
            "500": _json("The walker raised", _ERROR),
        },
    }
    if method in ("GET", "DELETE"):
        operation["parameters"] = [
            {"name": f.name, "in": "query", "required": f.required, "schema": schema_of(f.type)}
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


def schema_of(type_text: str) -> dict:
    """JSON Schema for a declared Jac type; `{}` (anything) for what is not understood."""
    try:
        return _schema(ast.parse(type_text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        return {}


def _schema(node: ast.expr) -> dict:
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _any_of([_schema(node.left), _schema(node.right)])
    if isinstance(node, ast.Name):
        return dict(_SCALARS.get(node.id, {}))
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        generic = node.value.id
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if generic in ("list", "List") and len(args) == 1:
            return {"type": "array", "items": _schema(args[0])}
        if generic in ("dict", "Dict") and len(args) == 2:
            return {"type": "object", "additionalProperties": _schema(args[1])}
        if generic == "Optional" and len(args) == 1:
            return _any_of([_schema(args[0]), {"type": "null"}])
        if generic == "Union":
            return _any_of([_schema(arg) for arg in args])
    return {}


def _any_of(members: list[dict]) -> dict:
    if any(member == {} for member in members):
        return {}
    return {"anyOf": members}


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
