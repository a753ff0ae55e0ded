"""Export a session's history as CSV or JSON, streamed a page at a time: a million points never sit in
the server's memory, and the first bytes leave before the last page is read.

- `format=json`: every stored message (or those of `type`), exactly as spectators received them, as one
  JSON array.
- `format=csv`: one row per `training_metrics` message: `seq`, `timestamp`, `episode`, `step`, then a column
  per metric (every metric of the session, or those named by `metric`, and then only the messages that have
  one of them).
- `format=json` with `metric`: those rows as JSON objects.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bot.schemas import MESSAGE_TYPES, MetricName
from bot.server.api.access import ReadsSession
from bot.server.api.bodies import error_response, errors
from bot.server.api.deps import ServiceDep
from bot.server.api.history import parse_time
from bot.server.api.params import Episode, Since, Until, parse_word_list, word_list
from bot.server.services import TrainingService
from bot.store.reads import MessageFilter

EXPORT_PAGE = 5000  # messages per read: a few MB of frames at most
MAX_COLUMNS = 16  # metrics named at once, as for /series (none named: every metric of the session)

router = APIRouter(prefix="/api/training/sessions/{session_id}", tags=["history"])

Frames = list[tuple[int, str, str]]
ROW_HEAD = ["seq", "timestamp", "episode", "step"]  # then a column per metric


@router.get(
    "/export",
    responses={
        **errors(401, 403, 422, 429),
        404: error_response("no session has this id, or it has no metric named in `metric`", session_id="string"),
        200: {"content": {"text/csv": {}, "application/json": {}}, "description": "the history, streamed"},
    },
    dependencies=[ReadsSession],
    response_class=StreamingResponse,
)
async def export(
    session_id: str,
    service: ServiceDep,
    format: Literal["csv", "json"] = "json",
    metric: Annotated[
        list[MetricName], Query(max_length=MAX_COLUMNS, description="columns (default: every metric)")
    ] = [],  # noqa: B006
    type: Annotated[str | None, word_list(MESSAGE_TYPES, "JSON of messages: comma-separated types")] = None,
    start_episode: Episode = None,
    end_episode: Episode = None,
    since: Since = None,
    until: Until = None,
) -> Response:
    """The session's history as a download (`Content-Disposition: attachment`), streamed page by page."""
    rows = format == "csv" or bool(metric)
    where = MessageFilter(
        types=["training_metrics"] if rows else parse_word_list("type", type, MESSAGE_TYPES),
        start_episode=start_episode,
        end_episode=end_episode,
        since=parse_time("since", since),
        until=parse_time("until", until),
    )
    # The first page is read here, so that an unknown session is a 404, not a broken download.
    _, available, first = await service.export_page(session_id, where, EXPORT_PAGE)
    unknown = [m for m in metric if m not in available]
    if unknown:  # a series that does not exist, as a 404 (a column of nothing would hide a typo)
        detail = f"the session has no metric {unknown[0]!r}; it has {', '.join(available) or 'none'}"
        return JSONResponse({"detail": detail, "session_id": session_id}, status_code=404)  # as every 404
    columns = list(dict.fromkeys(metric)) or available
    named = bool(metric)  # rows of the named metrics' points only: a sparse one is not a column of blanks
    pages = _pages(service, session_id, where, first)
    if format == "csv":
        body, media = _csv(pages, columns, named), "text/csv; charset=utf-8"
    elif rows:
        body, media = _json(pages, lambda frames: _row_objects(frames, columns, named)), "application/json"
    else:
        body, media = _json(pages, lambda frames: ",".join(frame for _, _, frame in frames)), "application/json"
    filename = f"{session_id}.{format}"
    return StreamingResponse(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


async def _pages(
    service: TrainingService, session_id: str, where: MessageFilter, first: Frames
) -> AsyncIterator[Frames]:
    frames = first
    while frames:
        yield frames
        if len(frames) < EXPORT_PAGE:
            return
        where = dataclasses.replace(where, after_seq=frames[-1][0])
        _, _, frames = await service.export_page(session_id, where, EXPORT_PAGE)


async def _json(pages: AsyncIterator[Frames], encode: Callable[[Frames], str]) -> AsyncIterator[bytes]:
    yield b"["
    separator = b""
    async for frames in pages:
        text = await asyncio.to_thread(encode, frames)  # parsing a page is milliseconds: not on the loop
        if text:
            yield separator + text.encode()
            separator = b","
    yield b"]"


async def _csv(pages: AsyncIterator[Frames], columns: list[str], named: bool) -> AsyncIterator[bytes]:
    yield _csv_text([[*ROW_HEAD, *columns]]).encode()
    async for frames in pages:
        yield (await asyncio.to_thread(_csv_page, frames, columns, named)).encode()


def _csv_page(frames: Frames, columns: list[str], named: bool) -> str:
    return _csv_text(_rows(frames, columns, named))


def _csv_text(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _rows(frames: Frames, columns: list[str], named: bool) -> list[list[Any]]:
    """seq, the point's timestamp, episode, the engine's step and each column's value ("" where the point has
    none); with `named` columns, only the points that have one of them."""
    rows = []
    for seq, _, frame in frames:
        data = orjson.loads(frame)["data"]
        custom = data.get("custom") or {}
        values = [data.get(name, custom.get(name)) for name in columns]
        if named and values.count(None) == len(values):
            continue
        rows.append([seq, data.get("timestamp"), data.get("episode"), data.get("step"), *values])
    return rows


def _row_objects(frames: Frames, columns: list[str], named: bool) -> str:
    names = [*ROW_HEAD, *columns]
    rows = _rows(frames, columns, named)
    return ",".join(orjson.dumps(dict(zip(names, row, strict=True))).decode() for row in rows)
