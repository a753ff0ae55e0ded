"""Batch-shaped request bodies: orjson parse, one TypeAdapter call per request, errors that name the field.

Big batches are validated on a worker thread so the event loop keeps serving spectators meanwhile.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

M = TypeVar("M", bound=BaseModel)

OFFLOAD_ITEMS = 200


def parse_json(raw: bytes) -> Any:
    """orjson first; the standard library as a fallback, because Python engines write NaN and Infinity."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        position = getattr(exc, "pos", 0)
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", position), "msg": f"JSON decode error: {exc}", "input": {}}]
        ) from exc


def validation_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
    return [
        {"type": e["type"], "loc": (*prefix, *e["loc"]), "msg": e["msg"], "input": e.get("input")} for e in exc.errors()
    ]


async def read_items(request: Request, adapter: TypeAdapter[list[M]], max_items: int) -> list[M]:
    """One object or a list of them; a list is validated whole (all-or-nothing)."""
    body = parse_json(await request.body())
    items = body if isinstance(body, list) else [body]
    if not items:
        raise RequestValidationError(
            [{"type": "too_short", "loc": ("body",), "msg": "the list is empty; send at least one item", "input": []}]
        )
    if len(items) > max_items:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body",),
                    "input": len(items),
                    "msg": f"{len(items)} items in one request; at most {max_items} (split the batch)",
                }
            ]
        )
    try:
        if len(items) > OFFLOAD_ITEMS:
            return await run_in_threadpool(adapter.validate_python, items)
        return adapter.validate_python(items)
    except ValidationError as exc:
        # A single object was wrapped in a list: report its fields without the index.
        prefix: tuple[str | int, ...] = ("body",)
        errors = validation_errors(exc, prefix)
        if not isinstance(body, list):
            errors = [{**e, "loc": ("body", *e["loc"][2:])} for e in errors]
        raise RequestValidationError(errors) from exc


async def read_model(request: Request, model: type[M]) -> M:
    body = parse_json(await request.body())
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from exc


def body_schema(model: type[BaseModel], *, many: bool) -> dict[str, Any]:
    """OpenAPI requestBody for a hand-parsed body (the schemas are registered by app.openapi)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    schema = {"oneOf": [ref, {"type": "array", "items": ref}]} if many else ref
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
