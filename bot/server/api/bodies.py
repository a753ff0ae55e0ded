"""Request bodies: one pydantic call per request, errors that name the field.

Big ingest bodies are validated off the event loop (bot/server/ingest/batches.py), so it keeps serving spectators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

ECHO_LIMIT = 200  # characters of a refused input a refusal sends back, at most


def echoed(value: str, limit: int = ECHO_LIMIT) -> str:
    """At most `limit` characters of `value`, cut ones ending in "...": a refusal names what it refused, but
    a path parameter comes unchecked (any length), and its answer must stay short."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


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


# A list whose commas allow more than this many times max_items items is counted before it is validated.
PRECOUNT_FACTOR = 10
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{},')
_QUOTE, _COMMA = ord('"'), ord(",")
_OPENERS, _CLOSERS = frozenset(b"[{"), frozenset(b"]}")


def count_items(raw: bytes, stop_after: int | None = None) -> int:
    """The number of items of a JSON list (or `stop_after`, once that many are seen), without building them:
    one pass over its structure (quotes, brackets, commas), counting the commas at the top level. Constant
    memory, so a million tiny points are refused before pydantic builds a million dicts."""
    if b"\\" in raw:  # escapes: pairs of backslashes first, then escaped quotes, so no quote is misread
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    if not raw.strip()[1:-1].strip():
        return 0
    items, depth, in_string = 1, 0, False
    for byte in raw.translate(None, _NOT_STRUCTURE):
        if byte == _QUOTE:
            in_string = not in_string
        elif in_string:
            continue
        elif byte == _COMMA:
            if depth == 1:
                items += 1
                if stop_after is not None and items >= stop_after:
                    return items
        elif byte in _OPENERS:
            depth += 1
        elif byte in _CLOSERS:
            depth -= 1
    return items


def too_many(count: int, max_items: int, exact: bool = True) -> RequestValidationError:
    items = f"{count} items" if exact else f"more than {max_items} items"
    return RequestValidationError(
        [
            {
                "type": "too_long",
                "loc": ("body",),
                "input": count,
                "msg": f"{items} in one request; at most {max_items} (split the batch)",
            }
        ]
    )


def parse_items(raw: bytes, adapters: ItemAdapters[T], max_items: int) -> list[T]:
    """One object or a list of them, validated straight from the bytes (no dicts in between, which costs
    a third more); a list is validated whole, all-or-nothing. Python's NaN and Infinity literals are accepted.

    The number of items is checked before validation when the commas show there may be far too many
    (see PRECOUNT_FACTOR): up to that, validating and then refusing costs at most a few maximum batches."""
    is_list = raw.lstrip()[:1] == b"["
    if is_list and raw.count(b",") >= PRECOUNT_FACTOR * max_items:
        if (count := count_items(raw, stop_after=max_items + 1)) > max_items:
            raise too_many(count, max_items, exact=False)
    try:
        items = adapters.many.validate_json(raw) if is_list else [adapters.one.validate_json(raw)]
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from exc
    if not items:
        raise RequestValidationError(
            [{"type": "too_short", "loc": ("body",), "msg": "the list is empty; send at least one item", "input": []}]
        )
    if len(items) > max_items:
        raise too_many(len(items), max_items)
    return items


class BodyTooLargeError(Exception):
    """HTTP 413: the body is over `max_body_bytes`; nothing of it was read past the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over {limit} bytes (max_body_bytes); split the batch")
        self.limit = limit


class BodiesBusyError(Exception):
    """HTTP 503 with Retry-After: the bodies being read at once hold `max_body_bytes_in_flight` already."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the server is reading {limit} bytes of other request bodies (max_body_bytes_in_flight)")


class BodyBudget:
    """Bytes of request bodies being received at once, bounded: fifty slow uploads of the largest body each
    would otherwise hold fifty times max_body_bytes while they trickle in."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> None:
        if self.used + size > self.limit:
            raise BodiesBusyError(self.limit)
        self.used += size

    def give_back(self, size: int) -> None:
        self.used -= size


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it is known to be too large (declared or streamed), or with 503
    while other bodies being received hold the in-flight budget."""
    limit: int = request.state.settings.max_body_bytes
    budget: BodyBudget = request.state.body_budget
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError(limit)
            budget.take(len(chunk))
            chunks.append(chunk)
    finally:
        budget.give_back(sum(map(len, chunks)))
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_model(request: Request, model: type[M]) -> M:
    return parse_model(await read_body(request), model)


def parse_model(raw: bytes, model: type[M]) -> M:
    """Validated straight from the bytes: integers keep every digit (a JSON parser that turns a huge one
    into a float would store another value), and nesting is bounded by the parser."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from exc


def body_schema(model: type[BaseModel], *, many: bool) -> dict[str, Any]:
    """OpenAPI requestBody for a hand-parsed body (the schemas are registered by app.openapi)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    batch = {"type": "array", "items": ref, "minItems": 1, "description": "all-or-nothing; never empty"}
    schema = {"oneOf": [ref, batch]} if many else ref
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def error_response(description: str, **fields: str) -> dict[str, Any]:
    properties = {"detail": {"type": "string"}} | {name: {"type": kind} for name, kind in fields.items()}
    return {"description": description, "content": {"application/json": {"schema": {"properties": properties}}}}


# The error answers, for the OpenAPI document: each route lists the ones it can give.
ERRORS: dict[int, dict[str, Any]] = {
    400: error_response("the request cannot be done now; `detail` says why"),
    401: error_response("credentials are needed: for a protected room, its password in X-Room-Password"),
    403: error_response("the credentials do not give access to this"),
    404: error_response("no session has this id", session_id="string"),
    409: error_response(
        "the session id is taken, or the Idempotency-Key was used for another body", session_id="string"
    ),
    413: error_response("the body is over max_body_bytes"),
    # Answered by the connection guard (bot/server/edge/http_guard.py) before any route, so possible on every one.
    414: error_response("the URL is over max_url_bytes"),
    431: error_response("the request's headers are over max_header_bytes"),
    # Answered by the browser guard (bot/server/edge/browsers.py) before any route that changes state.
    415: error_response(
        "the body is not declared as application/json (a body with no Content-Type included), or it declares"
        " a Content-Encoding other than identity"
    ),
    422: {
        "description": "a value is invalid; `detail` lists each with its `loc`, `message` sums them up",
        "content": {
            "application/json": {"schema": {"properties": {"detail": {"type": "array"}, "message": {"type": "string"}}}}
        },
    },
    429: error_response("this client is over a rate limit; retry after Retry-After seconds", retry_after="number"),
    503: error_response("the database could not commit; nothing was stored, retry after Retry-After seconds"),
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in codes}
