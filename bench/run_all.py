"""Every benchmark in one run (about 8 minutes here; the PostgreSQL rows need it on 127.0.0.1): one table,
also written to bench/results/latest.json.

python bench/run_all.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    fanout,
    graphs,
    history,
    ingest,
    instances,
    joins,
    many_sessions,
    many_spectators,
    memory,
    sdk,
    slow_spectators,
)

Row = tuple[str, float, float | None, float | None, str, bool]


def rows() -> list[Row]:
    table: list[Row] = []
    for spectators, frames in ((100, 2000), (1000, 300)):
        f = fanout.throughput(spectators, frames)
        table.append(
            (
                f"fan-out deliveries/s, {spectators} spectators",
                f["ours"]["deliveries_per_s"],
                f["baseline"]["deliveries_per_s"],
                f["ratio"],
                ">= 0.7x bare broadcast()",
                f["ratio"] >= 0.7,
            )
        )
        table.append(
            (
                f"server CPU µs per delivery, {spectators} spectators",
                f["ours"]["server_cpu_us_per_delivery"],
                None,
                None,
                "printed",
                True,
            )
        )
    lat = fanout.latency(1000, 10, 15)
    base_p99 = lat["baseline"]["p99_ms"]
    table.append(
        (
            "p99 ms at 10,000 deliveries/s, 1000 spectators",
            lat["p99_ms"],
            base_p99,
            lat["p99_ms"] / base_p99,
            "<= 1.05x bare broadcast() (#28)",
            lat["p99_ms"] <= 1.05 * base_p99,
        )
    )
    table.append(("  server CPU µs per delivery", lat["server_cpu_us_per_delivery"], None, None, "printed", True))
    slow: Any = slow_spectators.measure(12000)
    table.append(
        ("ingest with 10 stalled / without", slow["ingest_ratio"], None, None, ">= 0.9", slow["ingest_ratio"] >= 0.9)
    )
    table.append(
        ("fast p99 with 10 stalled / without", slow["p99_ratio"], None, None, "<= 1.1", slow["p99_ratio"] <= 1.1)
    )
    many = many_sessions.measure(100, 10, 200)
    table.append(("100 sessions x 10 spectators: deliveries/s", many["deliveries_per_s"], None, None, "printed", True))
    table.append(("  p99 ms", many["p99_ms"], None, None, "printed", True))
    starve = many["slowest_session_s"] / many["median_session_s"]
    table.append(("  slowest session / median (no starvation)", starve, None, None, "<= 1.2", starve <= 1.2))
    ing = ingest.run(60)
    table.append(
        (
            "ingest points/s, 4 engines x 1000-point batches",
            ing["points_per_s"],
            ing["baseline_points_per_s"],
            ing["ratio"],
            ">= 0.6x raw sqlite3 (#28)",
            ing["ratio"] >= 0.6,
        )
    )
    table.append(
        (
            "  the same (baseline: raw INSERTs of 256 rows)",
            ing["points_per_s"],
            ing["multirow_points_per_s"],
            ing["multirow_ratio"],
            "printed",
            True,
        )
    )
    table.append(("ingest ack latency p99 ms", ing["p99_ms"], None, None, "printed", True))
    table.append(
        ("single-point requests/s, 8 clients", ing["single_point_requests_per_s"], None, None, "printed", True)
    )
    pg = instances.ingest_figures(quick=False)
    table.append(
        (
            "PostgreSQL ingest points/s (baseline: SQLite's)",
            pg["postgresql"],
            pg["sqlite"],
            pg["vs_sqlite"],
            ">= 0.8x SQLite (#28)",
            pg["vs_sqlite"] >= 0.8,
        )
    )
    table.append(
        (
            "  the same (baseline: raw COPY, one connection)",
            pg["postgresql"],
            pg["raw_copy"],
            pg["vs_raw_copy"],
            ">= 0.5x raw COPY (#28)",
            pg["vs_raw_copy"] >= 0.5,
        )
    )
    server_cpu = pg["server_cpu_ms_per_1000"] + pg["worker_cpu_ms_per_1000"]
    table.append(("  server + worker CPU ms per 1,000 points", server_cpu, None, None, "printed", True))
    table.append(
        (
            "  PostgreSQL's CPU ms per 1,000 points (raw COPY's: messages only)",
            pg["postgres_cpu_ms_per_1000"],
            pg["raw_copy_postgres_cpu_ms_per_1000"],
            None,
            "printed",
            True,
        )
    )
    his = history.measure(1_000_000)
    table.append(
        (
            "history page of 100,000 ms",
            his["page_ms"],
            his["raw_ms"],
            his["ratio"],
            "<= 2x raw (#28)",
            his["ratio"] <= 2,
        ),
    )
    hpg = history.postgres()
    table.append(
        (
            "  on PostgreSQL ms",
            hpg["postgres_page_ms"],
            hpg["postgres_raw_ms"],
            hpg["postgres_ratio"],
            "<= 2x raw (#28)",
            hpg["postgres_ratio"] <= 2,
        )
    )
    table.append(
        (
            "downsampled 1,000 of 1,000,000 ms",
            his["downsample_ms"],
            None,
            None,
            "<= 200 ms",
            his["downsample_ms"] <= 200,
        )
    )
    for key, ms in history.series_reads().items():
        points = int(key.split("_")[1])
        table.append((f"whole series of {points:,} to 1,000 points ms", ms, None, None, "<= 100 ms", ms <= 100))
    by_size = graphs.figures()
    growth = by_size[graphs.SIZES[-1]] / by_size[graphs.SIZES[0]]
    table.append(
        (
            "graph_update ms, graph of 100,000 / of 1,000",
            by_size[graphs.SIZES[-1]],
            by_size[graphs.SIZES[0]],
            growth,
            "independent of size (~1x)",
            growth <= 1.5,
        )
    )
    joined = joins.measure()
    table.append(
        (
            "p99 ms of 50 spectators while others join",
            joined["joining_p99_ms"],
            joined["quiet_p99_ms"],
            None,
            "<= +5 ms",
            joined["added_ms"] <= 5,
        )
    )
    storm = instances.storm_figures(quick=False)
    table.append(
        (
            "reconnect storm: 2,000 resumed s (PostgreSQL)",
            storm["seconds"],
            storm["baseline_seconds"],
            storm["ratio"],
            "<= 1.5x bare accept + greet, no gap (#28)",
            storm["ratio"] <= 1.5 and storm["gaps"] == 0,
        )
    )
    table.append(
        (
            "  live push p99 ms during the storm",
            storm["live_p99_ms"],
            storm["live_p99_before_ms"],
            storm["live_p99_ms"] / storm["live_p99_before_ms"],
            "<= 2x before (#28)",
            storm["live_p99_ms"] <= 2 * storm["live_p99_before_ms"],
        )
    )
    mem = memory.measure(1000)
    table.append(("RSS at rest MB", mem["rss_at_rest_mb"], None, None, "printed", True))
    table.append(("  RSS of the ingest worker processes MB", mem["workers_rss_mb"], None, None, "printed", True))
    per_spectator = mem["per_spectator_kb"]
    table.append(("RSS per idle spectator KB", per_spectator, None, None, "<= 24 KB (#28)", per_spectator <= 24))
    crowd = many_spectators.measure()
    table.append(
        (
            "10,000 spectators, 10 sessions, 1 frame/s: p99 ms",
            crowd["p99_ms"],
            crowd["baseline"]["p99_ms"],
            crowd["ratio"],
            "<= 1.2x bare broadcast(), every frame (#28)",
            crowd["ratio"] <= 1.2 and crowd["complete"],
        )
    )
    table.append(("  server RSS with them connected MB", crowd["rss_connected_mb"], None, None, "printed", True))
    s: Any = sdk.measure(100_000)
    table.append(
        (
            "SDK log_metrics median µs",
            s["up"]["median_us"],
            s["up"]["baseline_median_us"],
            None,
            "<= 5 µs",
            s["up"]["median_us"] <= 5,
        )
    )
    table.append(("SDK log_metrics p99 µs", s["up"]["p99_us"], None, None, "<= 50 µs", s["up"]["p99_us"] <= 50))
    table.append(
        (
            "SDK one engine points/s",
            s["throughput_points_per_s"],
            s["ingest_ceiling_points_per_s"],
            s["throughput_points_per_s"] / s["ingest_ceiling_points_per_s"],
            "printed",
            True,
        )
    )
    return table


def main() -> None:
    start = time.perf_counter()
    table = rows()
    print(f"\n{'figure':<52} {'value':>12} {'baseline':>12} {'ratio':>7}  target / met?")
    for name, value, base, ratio, target, met in table:
        base_text = f"{base:,.1f}" if base is not None else "-"
        ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
        print(f"{name:<52} {value:>12,.1f} {base_text:>12} {ratio_text:>7}  {target} {'yes' if met else 'NO'}")
    print(f"(all in {time.perf_counter() - start:.0f} s)")
    out = Path(__file__).resolve().parent / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            [dict(zip(("figure", "value", "baseline", "ratio", "target", "met"), row, strict=True)) for row in table],
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
