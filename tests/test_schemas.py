"""Wire models: what is accepted, what is refused, and how non-finite floats travel."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from bot.schemas import BotDecisionData, PerformanceGraphData, TrainingMetricsData
from bot.server.ingest.batches import read_batch
from bot.store.batch import metric_columns


def test_non_finite_floats_round_trip_as_strings() -> None:
    """NaN and ±Infinity are accepted as numbers or strings and serialised as strings."""
    point = TrainingMetricsData(loss_value=math.nan, current_reward="-Infinity", custom={"grad": "Infinity"})
    data = orjson.loads(point.model_dump_json(exclude_none=True))
    assert (
        data["loss_value"] == "NaN" and data["current_reward"] == "-Infinity" and data["custom"]["grad"] == "Infinity"
    )
    assert math.isnan(TrainingMetricsData.model_validate(data).loss_value or 0)


def test_metric_columns_hold_every_numeric_value_by_name() -> None:
    """A batch's metrics as columns: built-ins first, then custom scalars; None where a point lacks one."""
    points = [{"episode": 3, "current_reward": 1.0, "algorithm": "DQN", "custom": {"kl": 0.1}}, {"epsilon": 0.5}]
    columns = metric_columns(points)
    assert list(columns) == ["current_reward", "epsilon", "kl"]
    assert columns == {"current_reward": [1.0, None], "epsilon": [None, 0.5], "kl": [0.1, None]}


@pytest.mark.parametrize(
    "fields",
    [
        {"win_rate": 100.5},
        {"win_rate": math.nan},
        {"epsilon": 2},
        {"episode": -1},
        {"unknown": 1},
        {"custom": {"epsilon": 1.0}},
        {"custom": {"bad name!": 1.0}},
    ],
)
def test_metrics_refuse_bad_values(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TrainingMetricsData.model_validate(fields)


def test_probabilities_must_sum_to_one() -> None:
    """Within 1e-3 is accepted; more is refused with the sum in the message."""
    BotDecisionData(action_probabilities={"a": 0.3333, "b": 0.3333, "c": 0.3333})
    with pytest.raises(ValidationError, match="sum to 1"):
        BotDecisionData(action_probabilities={"a": 0.5, "b": 0.49})


def test_graph_metrics_default_to_the_series_sent() -> None:
    graph = PerformanceGraphData(graph_id="g", data_points={"loss": [{"value": 1.0}]})
    assert graph.metrics == ["loss"] and graph.max_points == 1000


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server's local time 5 hours behind UTC, as on a machine not set to UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("sent", ["2024-01-01T00:00:00", "2024-01-01", "2024-01-01T00:00:00.000"])
def test_a_time_without_an_offset_is_utc_whatever_the_server_s_zone(new_york: None, sent: str) -> None:
    """Like `since` and `until`: a JSON time with no offset is UTC, stored with its Z. It was taken in the
    server's own zone (here 5 hours off) and stored with no zone, so nobody could tell."""
    batch = read_batch("training_metrics", orjson.dumps([{"timestamp": sent, "episode": 1}]), 10)
    assert batch.timestamps == [datetime(2024, 1, 1, tzinfo=UTC).timestamp()]
    assert orjson.loads(batch.data[0])["timestamp"] == "2024-01-01T00:00:00Z"


def test_a_python_datetime_without_a_zone_is_local_time(new_york: None) -> None:
    """In Python, a naive datetime is local time (datetime.now()): it is kept as that instant, in UTC."""
    point = TrainingMetricsData(timestamp=datetime(2024, 1, 1, 0, 0))
    assert point.timestamp == datetime(2024, 1, 1, 5, 0, tzinfo=UTC)
