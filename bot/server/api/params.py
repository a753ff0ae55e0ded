"""Query parameters, typed once: every integer is bounded to what the store holds (64-bit), so no value
reaches the database that it would refuse with an overflow; a bad one is a 422 naming the parameter.
Where a parameter is parsed by hand (lists of words, times), its schema still says exactly what is taken,
so a client, or a fuzzer, can tell a valid value from the document."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any

from fastapi import Query
from fastapi.exceptions import RequestValidationError

from bot.schemas import INT64_MAX

Episode = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
Seq = Annotated[int, Query(ge=0, le=INT64_MAX, description="only messages after this seq")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX)]
Cursor = Annotated[int | None, Query(ge=0, le=INT64_MAX, description="next_cursor of the previous page")]

# Epoch seconds or an RFC 3339 date-time (ISO 8601 in general is taken too: see history.parse_time).
_TIME_SCHEMA = {"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time", "maxLength": 64}]}
Since = Annotated[
    str | None,
    Query(max_length=64, description="from this time: epoch seconds or ISO 8601", json_schema_extra=_TIME_SCHEMA),
]
Until = Annotated[
    str | None,
    Query(max_length=64, description="up to this time: epoch seconds or ISO 8601", json_schema_extra=_TIME_SCHEMA),
]


def bad_query(name: str, value: str, msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", name), "msg": msg, "input": value}])


@cache
def word_list_pattern(words: tuple[str, ...]) -> str:
    """One or more of `words`, comma-separated, spaces allowed around each."""
    word = "|".join(re.escape(w) for w in words)
    return rf"^ *({word}) *(, *({word}) *)*$"


def word_list(words: Sequence[str], description: str) -> Any:
    """The Query for a comma-separated list of `words` (parse it with parse_word_list)."""
    return Query(description=description, json_schema_extra={"pattern": word_list_pattern(tuple(words))})


def parse_word_list(name: str, value: str | None, words: Sequence[str]) -> list[str] | None:
    if value is None:
        return None
    if re.fullmatch(word_list_pattern(tuple(words)), value) is None:
        unknown = next((w for w in (w.strip() for w in value.split(",")) if w not in words), value)
        raise bad_query(name, value, f"unknown {name} {unknown!r}; expected one or more of {', '.join(words)}")
    return [w.strip() for w in value.split(",")]
