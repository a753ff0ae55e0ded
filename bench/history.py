"""History figures on a session of 1,000,000 points: one 100,000-point page over HTTP against raw
indexed fetchall + orjson.dumps of the same rows (same run), and a downsampled series over all of it;
then the downsampled read of a whole series (the session page's chart backfill) at 10k, 100k, 450k and
1M points (target: each <= 100 ms, with no cliff between them).

    python bench/history.py [POINTS]
    python bench/history.py --series
    python bench/history.py --postgres
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bot.schemas import SessionCreate, TrainingMetricsData
from bot.store.batch import prepare
from bot.store.engine import create_engines
from bot.store.store import prepare_schema
from bot.store.writes import CreateSession, Ingest, commit_group

PAGE = 100_000


def fill(database: Path | str, points: int) -> None:
    """Store `points` metrics the way the server does (the same write jobs), 10,000 per transaction, in a
    SQLite file or at a database URL."""
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    writer, reader = create_engines(url, sqlite_synchronous="NORMAL")
    prepare_schema(writer)
    commit_group(writer, [CreateSession("big", SessionCreate())], time.time())
    for first in range(0, points, 10_000):
        items = [TrainingMetricsData(episode=e, current_reward=(e % 997) / 10.0) for e in range(first, first + 10_000)]
        commit_group(writer, [Ingest("big", prepare("training_metrics", items))], time.time())
    writer.dispose()
    reader.dispose()


def raw_page(database: Path, after: int) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(database)
    rows = conn.execute(
        "SELECT seq, data FROM messages WHERE session_pk = 1 AND seq > ? ORDER BY seq LIMIT ?", (after, PAGE)
    ).fetchall()
    orjson.dumps([data for _, data in rows])
    conn.close()
    return time.perf_counter() - start


def raw_postgres_page(url: str, after: int) -> float:
    """raw_page's fetch and encode on PostgreSQL, from a new psycopg connection."""
    start = time.perf_counter()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, data FROM messages WHERE session_pk = 1 AND seq > %s ORDER BY seq LIMIT %s", (after, PAGE)
        ).fetchall()
        orjson.dumps([data for _, data in rows])
    return time.perf_counter() - start


def best_of(runs: int, measure: object) -> float:
    return min(measure() for _ in range(runs))  # type: ignore[operator]


def measure(points: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        database = Path(directory) / "history.db"
        start = time.perf_counter()
        fill(database, points)
        print(f"filled a session with {points:,} points in {time.perf_counter() - start:.1f} s")
        after = points // 2
        with server_process(database=database) as server, httpx.Client(base_url=server.url, timeout=120) as http:
            history = f"/api/training/sessions/big/history?limit={PAGE}&cursor={after}"
            series = "/api/training/sessions/big/series?metric=current_reward&points=1000"

            assert http.get(history).json()["count"] == PAGE  # checked once, outside the timing

            def page() -> float:
                t = time.perf_counter()
                assert http.get(history).status_code == 200  # the whole body is read
                return time.perf_counter() - t

            def downsampled() -> float:
                t = time.perf_counter()
                assert len(http.get(series).json()["series"]["current_reward"]["value"]) <= 1000
                return time.perf_counter() - t

            ours = best_of(3, page)
            down = best_of(3, downsampled)
        raw = best_of(3, lambda: raw_page(database, after))
    ratio = ours / raw
    print(
        f"one page of {PAGE:,} points over HTTP: {ours * 1000:.0f} ms; raw indexed fetchall + orjson.dumps: "
        f"{raw * 1000:.0f} ms; ratio {ratio:.2f} (target <= 2)"
    )
    print(
        f"downsampled series (1,000 points, min/max per bucket) over {points:,}: {down * 1000:.0f} ms "
        f"(target <= 200 ms)"
    )
    return {"page_ms": ours * 1000, "raw_ms": raw * 1000, "ratio": ratio, "downsample_ms": down * 1000}


SERIES_SIZES = (10_000, 100_000, 450_000, 1_000_000)
SERIES_URL = "/api/training/sessions/big/series?metric=current_reward&points=1000"


def series_reads() -> dict[str, float]:
    """The downsampled read of a whole series (1,000 points, the chart's width), over HTTP, per size."""
    figures: dict[str, float] = {}
    for points in SERIES_SIZES:
        with tempfile.TemporaryDirectory() as directory:
            database = Path(directory) / "series.db"
            fill(database, points)
            with server_process(database=database) as server, httpx.Client(base_url=server.url, timeout=120) as http:

                def read() -> float:
                    t = time.perf_counter()
                    assert len(http.get(SERIES_URL).json()["series"]["current_reward"]["value"]) <= 1000
                    return time.perf_counter() - t

                took = best_of(5, read) * 1000
        figures[f"series_{points}_ms"] = took
        print(f"downsampled whole series of {points:>9,} points to 1,000: {took:6.1f} ms (target <= 100 ms)")
    return figures


def postgres(points: int = 200_000) -> dict[str, float]:
    """The page of PAGE messages on PostgreSQL, against raw_postgres_page in the same run; a session of
    200,000 points (the page is from its middle, as on SQLite; filling a million takes minutes)."""
    from bench.instances import postgres_schema

    with postgres_schema() as url:
        fill(url, points)
        after = points // 2
        with server_process({"DATABASE_URL": url}) as server, httpx.Client(base_url=server.url, timeout=120) as http:
            history = f"/api/training/sessions/big/history?limit={PAGE}&cursor={after}"
            assert http.get(history).json()["count"] == PAGE

            def page() -> float:
                t = time.perf_counter()
                assert http.get(history).status_code == 200
                return time.perf_counter() - t

            ours = best_of(3, page)
        raw = best_of(3, lambda: raw_postgres_page(url, after))
    print(
        f"PostgreSQL: one page of {PAGE:,} points over HTTP: {ours * 1000:.0f} ms; raw fetchall + orjson.dumps: "
        f"{raw * 1000:.0f} ms; ratio {ours / raw:.2f} (target <= 2)"
    )
    return {"postgres_page_ms": ours * 1000, "postgres_raw_ms": raw * 1000, "postgres_ratio": ours / raw}


def main() -> None:
    if sys.argv[1:] == ["--postgres"]:
        print(postgres())
        return
    if sys.argv[1:] == ["--series"]:
        print(series_reads())
        return
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))


if __name__ == "__main__":
    main()
