"""A validated batch, encoded before it reaches the writer, so the one writer thread only numbers and stores it.

Encoding (each item's JSON), timestamps and the per-metric columns are computed where the body was
validated (a worker process, see bot/server/ingest/batches.py); the writer then builds frames around the
JSON once seq is known. This keeps the single writer, the bottleneck of ingest, to a few string joins
and one insert per point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pydantic_core
from pydantic import BaseModel

from bot.schemas import SERIES_FIELDS, BotDecisionData, PerformanceGraphData, utc_now

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


def prepare(message_type: str, items: Sequence[Any]) -> Batch:
    """Encode a validated batch: training metrics as TrainingMetricsDict (or models), others as models."""
    if message_type == "training_metrics":
        models = bool(items) and isinstance(items[0], BaseModel)
        return metrics_batch([item.model_dump(exclude_none=True) for item in items] if models else items)
    to_json = type(items[0]).__pydantic_serializer__.to_json  # model_dump_json's own core, without its wrapper
    data = [to_json(item, exclude_none=True).decode() for item in items]
    episodes = [getattr(item, "episode", None) for item in items]
    if message_type == "graph_update":
        return Batch(message_type, data, episodes, [], graphs=list(items))
    decisions: Sequence[BotDecisionData] = items
    return Batch(message_type, data, episodes, [item.timestamp.timestamp() for item in decisions])


def metrics_batch(points: Sequence[dict[str, Any]]) -> Batch:
    """Training metrics validated as TrainingMetricsDict: only the keys that were sent, so absent fields
    cost nothing. The JSON leaves out nulls and writes NaN and ±Infinity as strings, as the model would."""
    now = utc_now()
    points = [p if "timestamp" in p and None not in p.values() else _completed(p, now) for p in points]
    # Decoded at once: orjson's bytes are allocated roomy, and a thousand of them alive together cost
    # several times the encoding itself (fresh memory each time), where one freed is reused by the next.
    texts = [orjson.dumps(point, option=orjson.OPT_UTC_Z).decode() for point in points]
    # orjson writes NaN and Infinity as null (rare: only then the slower encoder that writes them as strings)
    data = [text if "null" not in text else _with_inf_nan(point) for text, point in zip(texts, points, strict=True)]
    episodes = [point.get("episode") for point in points]
    timestamps = [point["timestamp"].timestamp() for point in points]
    return Batch("training_metrics", data, episodes, timestamps, columns=metric_columns(points))


def _completed(point: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The point without explicit nulls, stamped with the server's time when it came without one."""
    return {"timestamp": now} | {key: value for key, value in point.items() if value is not None}


def _with_inf_nan(point: dict[str, Any]) -> str:
    return pydantic_core.to_json(point, inf_nan_mode="strings").decode()


def metric_columns(points: Sequence[dict[str, Any]]) -> dict[str, Column]:
    """Every metric the batch holds, as a column: built-in fields first, then custom scalars by name."""
    sent = set().union(*points)
    columns: dict[str, Column] = {}
    for name in SERIES_FIELDS:
        if name in sent:
            values = [point.get(name) for point in points]
            if values.count(None) != len(values):
                columns[name] = values
    if "custom" in sent:
        for index, point in enumerate(points):
            for name, value in (point.get("custom") or {}).items():
                column = columns.get(name)
                if column is None:
                    column = columns[name] = [None] * len(points)
                column[index] = value
    return columns
