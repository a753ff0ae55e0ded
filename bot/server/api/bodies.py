"""Request bodies: one pydantic call per request, errors that name the field.

Big ingest bodies are validated off the event loop (bot/server/batches.py), so it keeps serving spectators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def validation_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
    return [
        {"type": e["type"], "loc": (*prefix, *e["loc"]), "msg": e["msg"], "input": e.get("input")} for e in exc.errors()
    ]


@dataclass(frozen=True)
class ItemAdapters(Generic[T]):
    """Validators for a body that is one item or a list of them."""

    one: TypeAdapter[T]
    many: TypeAdapter[list[T]]

    @classmethod
    def of(cls, model: type[T]) -> ItemAdapters[T]:
        return cls(TypeAdapter(model), TypeAdapter(list[model]))  # type: ignore[valid-type]


def parse_items(raw: bytes, adapters: ItemAdapters[T], max_items: int) -> list[T]:
    """One object or a list of them, validated straight from the bytes (no dicts in between, which costs
    a third more); a list is validated whole, all-or-nothing. Python's NaN and Infinity literals are accepted."""
    try:
        items = adapters.many.validate_json(raw) if raw.lstrip()[:1] == b"[" else [adapters.one.validate_json(raw)]
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from exc
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
    return items


async def read_model(request: Request, model: type[M]) -> M:
    """Validated straight from the bytes: integers keep every digit (a JSON parser that turns a huge one
    into a float would store another value), and nesting is bounded by the parser."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from exc


def body_schema(model: type[BaseModel], *, many: bool) -> dict[str, Any]:
    """OpenAPI requestBody for a hand-parsed body (the schemas are registered by app.openapi)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    schema = {"oneOf": [ref, {"type": "array", "items": ref}]} if many else ref
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
