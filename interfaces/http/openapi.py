"""The published OpenAPI schema: problem documents are ``application/problem+json``.

FastAPI documents every response under ``application/json`` and adds its own 422
validation error; here error responses are moved to the problem media type and
the request-validation schemas (never returned: malformed requests are 400
problems) are dropped.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from interfaces.http.problems import PROBLEM_MEDIA_TYPE

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes,
                tags=app.openapi_tags,
            )
            _problem_responses(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problem_responses(schema: dict[str, Any]) -> None:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if not str(status).startswith(("4", "5")):
                    continue
                if status == "422" and "HTTPValidationError" in str(response):
                    response["description"] = "The ledger's rules reject the values"
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
