"""Query parameters, typed once: every integer is bounded to what the store holds (64-bit), so no value
reaches the database that it would refuse with an overflow; a bad one is a 422 naming the parameter."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from bot.schemas import INT64_MAX

Episode = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
Seq = Annotated[int, Query(ge=0, le=INT64_MAX, description="only messages after this seq")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX)]
Cursor = Annotated[int | None, Query(ge=0, le=INT64_MAX, description="next_cursor of the previous page")]
Since = Annotated[str | None, Query(max_length=64, description="from this time: epoch seconds or ISO 8601")]
Until = Annotated[str | None, Query(max_length=64, description="up to this time: epoch seconds or ISO 8601")]
