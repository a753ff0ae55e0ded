"""History by message: filtered by type, episode or time range, paginated by a stable seq cursor.

The messages are returned exactly as spectators received them (the stored frame text), so the page
is assembled without parsing or re-encoding a single message.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from bot.schemas import MESSAGE_TYPES
from bot.server.api.access import ReadsSession
from bot.server.api.bodies import errors
from bot.server.api.deps import ServiceDep
from bot.server.api.params import Cursor, Episode, Seq, Since, Until, bad_query, parse_word_list, word_list
from bot.server.services import HistoryPage
from bot.store.reads import MessageFilter

MAX_METRICS = 16  # per /series request: each is a read, and a chart shows a handful
MAX_POINTS = 10_000  # per metric: ten times a wide chart's pixels

router = APIRouter(
    prefix="/api/training/sessions/{session_id}",
    tags=["history"],
    responses=errors(401, 403, 404, 422, 429),
    dependencies=[ReadsSession],
)


def parse_time(name: str, value: str | None) -> float | None:
    """Seconds since the epoch, or an ISO 8601 date-time (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise bad_query(name, value, f"{name} must be a finite number of seconds or ISO 8601, got {value!r}")
        return seconds
    try:
        # RFC 3339 allows a lowercase z (and t), as ingest takes them: fromisoformat takes neither z.
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
    except ValueError:
        raise bad_query(name, value, f"{name} must be seconds since the epoch or ISO 8601, got {value!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@router.get("/history", response_class=Response)
async def history(
    session_id: str,
    service: ServiceDep,
    type: Annotated[str | None, word_list(MESSAGE_TYPES, "comma-separated message types")] = None,
    start_episode: Episode = None,
    end_episode: Episode = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    cursor: Cursor = None,
) -> Response:
    """Messages in seq order; `next_cursor` is null on the last page and stays valid as data arrives."""
    where = MessageFilter(
        after_seq=cursor or 0,
        types=parse_word_list("type", type, MESSAGE_TYPES),
        start_episode=start_episode,
        end_episode=end_episode,
        since=parse_time("since", since),
        until=parse_time("until", until),
    )
    page = await service.history_page(session_id, where, limit)
    return StreamingResponse(_page_body(session_id, page, limit), media_type="application/json")


async def _page_body(session_id: str, page: HistoryPage, limit: int) -> AsyncIterator[bytes]:
    """The page's JSON, its frames sent as the database joins them; the count and the cursor come last."""
    try:
        head = {"session_id": session_id, "epoch": page.session["epoch"], "last_seq": page.session["last_seq"]}
        yield orjson.dumps(head)[:-1] + b',"messages":['
        first = True
        async for piece in page.relay.items():
            if not first:
                yield b","
            yield piece
            first = False
        count, last = await page.done
        yield b"]," + orjson.dumps({"count": count, "next_cursor": str(last) if count == limit else None})[1:]
    finally:
        page.close()


@router.get("/series")
async def series(
    session_id: str,
    service: ServiceDep,
    metric: Annotated[
        list[str],
        Query(max_length=MAX_METRICS, description=f"metric names; repeat for several (at most {MAX_METRICS})"),
    ] = [],  # noqa: B006
    points: Annotated[int, Query(ge=2, le=MAX_POINTS, description="at most this many points per metric")] = 1000,
    start_episode: Episode = None,
    end_episode: Episode = None,
    since: Since = None,
    until: Until = None,
    after_seq: Seq = 0,
) -> Response:
    """History by metric, for charts: columnar arrays, downsampled to at most `points` per metric.

    Downsampling keeps the first and the last point and, in each of (points-2)/2 equal buckets, the
    minimum and the maximum, so spikes survive and the same data always gives the same chart.
    A whole long series is read from per-block (128 seqs) min/max rollups kept by ingest, so buckets
    are block-aligned there; a range (episode, time, after_seq) reads the points themselves.
    NaN points are left out (counted in `nan_count`); ±Infinity is kept as "Infinity"/"-Infinity".
    `available` lists every metric the session has; a metric with none of its points is an empty series, not
    the 404 of an export (a download), since a chart may ask before its metric's first point. Each point has
    its seq, episode, timestamp and `step`, the engine's own step where the point carried one (null otherwise).
    """
    where = MessageFilter(
        after_seq=after_seq,
        start_episode=start_episode,
        end_episode=end_episode,
        since=parse_time("since", since),
        until=parse_time("until", until),
    )
    return Response(
        orjson.dumps(await service.series(session_id, metric, where, points)), media_type="application/json"
    )


@router.get("/graphs")
async def graphs(session_id: str, service: ServiceDep) -> Response:
    """The session's performance graphs as they stand: the newest max_points per series."""
    state = await service.state(session_id)
    return Response(orjson.dumps({"session_id": session_id, "graphs": state.graphs}), media_type="application/json")


@router.get("/summary")
async def summary(session_id: str, service: ServiceDep) -> Response:
    """Per metric: `count` and `nan_count`, `last` (with its `last_seq`, `last_episode`), `min`, `max`, and
    `recent_mean` of the newest `recent_count` (at most 100) non-NaN points; exact, from the rollups."""
    return Response(orjson.dumps(await service.summary(session_id)), media_type="application/json")


@router.get("/decisions")
async def decisions(
    session_id: str,
    service: ServiceDep,
    buckets: Annotated[int, Query(ge=1, le=1000, description="at most this many rows, each a range of seqs")] = 200,
    min_decisions: Annotated[
        int, Query(ge=1, le=100_000, description="decisions a bucket holds at least (neighbours merged)")
    ] = 1,
) -> Response:
    """The policy over time: for each bucket of seqs, how many decisions, how often each action was chosen
    (the 10 most chosen by name, the rest as "other"), the mean `confidence_score`, and the episode and
    timestamp of its last decision. With `min_decisions`, sparse decisions are not read one per bucket."""
    body = await service.decisions(session_id, buckets, min_decisions)
    return Response(orjson.dumps(body), media_type="application/json")
