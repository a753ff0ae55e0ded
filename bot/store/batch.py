"""A validated batch, encoded before it reaches the writer, so the one writer thread only numbers and stores it.

Encoding (each item's JSON), timestamps and the per-metric columns are computed on the request's worker
thread; the writer then builds frames around the JSON once seq is known. This keeps the single writer,
the bottleneck of ingest, to a few string joins and one insert per point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.schemas import SERIES_FIELDS, BotDecisionData, PerformanceGraphData, TrainingMetricsData

WireItem = TrainingMetricsData | BotDecisionData | PerformanceGraphData
Column = list[float | None]  # one value per item of the batch; None where the item lacks the metric


@dataclass(frozen=True, slots=True)
class Batch:
    message_type: str
    data: list[str]  # each item's JSON, as spectators receive it in `data`
    episodes: list[int | None]
    timestamps: list[float]  # the engine's own time; empty for graph updates, which take the server's
    columns: dict[str, Column] = field(default_factory=dict)  # training_metrics: metric -> values
    graphs: list[PerformanceGraphData] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.data)


def prepare(message_type: str, items: Sequence[WireItem]) -> Batch:
    """Encode a validated batch: one JSON text per item, its episode and time, and columns by metric."""
    to_json = type(items[0]).__pydantic_serializer__.to_json  # model_dump_json's own core, without its wrapper
    data = [to_json(item, exclude_none=True).decode() for item in items]
    episodes = [getattr(item, "episode", None) for item in items]
    if message_type == "graph_update":
        return Batch(message_type, data, episodes, [], graphs=[item for item in items])  # type: ignore[misc]
    timestamps = [item.timestamp.timestamp() for item in items]  # type: ignore[union-attr]
    if message_type != "training_metrics":
        return Batch(message_type, data, episodes, timestamps)
    return Batch(message_type, data, episodes, timestamps, columns=metric_columns(items))  # type: ignore[arg-type]


def metric_columns(items: Sequence[TrainingMetricsData]) -> dict[str, Column]:
    """Every metric the batch holds, as a column: built-in fields first, then custom scalars by name."""
    fields = [item.__dict__ for item in items]
    columns: dict[str, Column] = {}
    for name in SERIES_FIELDS:
        values = [f[name] for f in fields]
        if values.count(None) != len(values):
            columns[name] = values
    for index, item in enumerate(items):
        for name, value in item.custom.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * len(items)
            column[index] = value
    return columns
