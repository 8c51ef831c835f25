"""The API's contract as its OpenAPI document states it (issue 24): every status code an endpoint
can answer, one error model for all of them, and the real content types of binary answers.

Clients in other languages are generated from ``/openapi.json``, so it must be true. FastAPI
declares only what a route returns on success and a 422 for validation errors; this server answers
validation errors with 400, and middlewares answer before any route (400 and 421 for the Host,
401 for the token, 413 for the body size). So the document FastAPI builds is completed here, once,
from one table: adding a route adds it to the contract with the same errors.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error answer: one line saying what happened and what to do."""

    error: str


_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 0}}}
#: Every operation may meet these (before or outside its route).
_EVERY = {
    400: "A parameter is malformed or out of its range, or the request has no valid Host header",
    401: "The server has a token and the request did not carry it",
    404: "No index yet, or no such image",
    421: "The server does not answer to the Host name of the request (--allowed-host)",
    500: "An unexpected error (the server's log says which)",
    503: "The index is busy, or its catalog database cannot be reached right now: try again after Retry-After",
}
#: Operations with a request body may also meet these.
_WITH_BODY = {413: "The request body (the upload) is larger than the server accepts"}
#: Binary answers by path suffix: (media types of the 200, extra statuses).
_BINARY = {
    "/thumbnail": (("image/jpeg",), {304: "Not modified (If-None-Match matched the ETag)",
                                     422: "The image cannot be decoded into a thumbnail"}),
    "/file": (("image/*", "application/octet-stream"),
              {206: "Part of the file (Range)", 304: "Not modified (If-None-Match matched the ETag)",
               416: "The Range cannot be satisfied"}),
}


def error_response(description: str, status: int) -> dict[str, Any]:
    """An OpenAPI response object for an error answer."""
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}
    if status == 503:
        response["headers"] = dict(_RETRY_AFTER)
    return response


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (as FastAPI builds it) with every answer this server can give declared."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):  # 422 is never answered: validation is a 400
        schemas.pop(name, None)
    for name, schema in schemas.items():  # form fields: a multipart part cannot be null either
        if name.startswith("Body_"):
            schema["properties"] = {k: not_null(v) for k, v in schema.get("properties", {}).items()}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", ()):
                parameter["schema"] = not_null(parameter.get("schema", {}))
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            errors = dict(_EVERY)
            if "requestBody" in operation:
                errors.update(_WITH_BODY)
            for suffix, (media, extra) in _BINARY.items():
                if path.endswith(suffix) and method == "get":
                    binary = {"schema": {"type": "string", "format": "binary"}}
                    ok = responses.setdefault("200", {"description": "Successful Response"})
                    ok["content"] = {m: dict(binary) for m in media}
                    for status, text in extra.items():
                        if 200 <= status < 300:
                            responses[str(status)] = {"description": text, "content": {m: dict(binary) for m in media}}
                        elif status == 304:
                            responses[str(status)] = {"description": text}
                        else:
                            errors[status] = text
            for status, text in errors.items():  # a route's own description of an error is kept
                given = responses.get(str(status), {}).get("description")
                responses[str(status)] = error_response(given or text, status)
    return document


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without the ``null`` FastAPI adds for an optional one: a query string
    cannot carry a null (leaving the parameter out is how it is not set), and a client generated
    from ``anyOf: [array, null]`` cannot say which of the two it is sending."""
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [o for o in options if o.get("type") != "null"]
    if len(kept) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**kept[0], **rest}


def install_contract(app: FastAPI) -> None:
    """Make ``app``'s ``/openapi.json`` the completed contract (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
