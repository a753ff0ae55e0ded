"""What one `graph_update` costs the writer as its graph grows: one-point updates to a graph of
1,000, 10,000 and 100,000 points (max_points 100,000), each its own commit, as the group-commit writer
applies them. The target: the cost does not grow with the graph (every session's ingest shares the writer).

    python bench/graphs.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.schemas import PerformanceGraphData, SessionCreate
from bot.store.batch import prepare
from bot.store.engine import create_engines
from bot.store.store import prepare_schema
from bot.store.writes import CreateSession, Ingest, commit_group

SIZES = (1_000, 10_000, 100_000)
UPDATES = 200


def update(points: int, start: int) -> PerformanceGraphData:
    series = [{"value": float(start + i)} for i in range(points)]
    return PerformanceGraphData.model_validate(
        {"graph_id": "reward", "max_points": 100_000, "data_points": {"reward": series}}
    )


def measure(size: int) -> float:
    """Median milliseconds of a one-point update's commit, once the graph holds `size` points."""
    with tempfile.TemporaryDirectory() as directory:
        writer, reader = create_engines(f"sqlite:///{Path(directory) / 'g.db'}", sqlite_synchronous="NORMAL")
        prepare_schema(writer)
        commit_group(writer, [CreateSession("g", SessionCreate())], time.time())
        for start in range(0, size, 10_000):
            batch = prepare("graph_update", [update(min(10_000, size - start), start)])
            commit_group(writer, [Ingest("g", batch)], time.time())
        took = []
        for i in range(UPDATES):
            batch = prepare("graph_update", [update(1, size + i)])
            t = time.perf_counter()
            commit_group(writer, [Ingest("g", batch)], time.time())
            took.append(time.perf_counter() - t)
        writer.dispose()
        reader.dispose()
    return statistics.median(took) * 1000


def figures() -> dict[int, float]:
    by_size = {size: measure(size) for size in SIZES}
    for size, ms in by_size.items():
        print(f"one-point graph_update to a graph of {size:>7,} points: {ms:7.3f} ms per commit (median of {UPDATES})")
    print(f"largest / smallest: {by_size[SIZES[-1]] / by_size[SIZES[0]]:.2f} (target: about 1, independent of size)")
    return by_size


def main() -> None:
    figures()


if __name__ == "__main__":
    main()
