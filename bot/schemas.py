"""Wire models shared by the server, the SDK and the web page.

Non-finite floats (a diverging loss: NaN, Infinity, -Infinity) are real data. They are accepted as
JSON numbers (`NaN`, `Infinity`, as Python's json module writes them) or as the strings "NaN",
"Infinity" and "-Infinity", and they always travel out as those strings, because standard JSON
has no literal for them. Fields with a range (win_rate, epsilon, probabilities) reject them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

__all__ = [
    "MESSAGE_TYPES",
    "BotDecisionData",
    "GraphPoint",
    "MessageType",
    "PerformanceGraphData",
    "RoomSpec",
    "SessionCreate",
    "SessionStatus",
    "SessionUpdate",
    "TrainingMetricsData",
    "WsMessage",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


# What the server stores and fans out; `lag`, `reset`, `snapshot` and `pong` are control messages.
MessageType = Literal["training_metrics", "bot_decision", "graph_update", "training_status"]
MESSAGE_TYPES: tuple[str, ...] = ("training_metrics", "bot_decision", "graph_update", "training_status")

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class SessionStatus(StrEnum):
    created = "created"
    running = "running"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    stopped = "stopped"
    stale = "stale"  # set by the server: running, but the engine has been silent too long


ENDED_STATUSES = frozenset({SessionStatus.completed, SessionStatus.failed, SessionStatus.stopped})


class WireModel(BaseModel):
    """Strict about unknown fields (a typo is an error, not silently dropped), NaN-safe on the way out."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


def _does_not_shadow(custom: dict[str, float]) -> dict[str, float]:
    shadowed = sorted(set(custom) & set(SERIES_FIELDS))
    if shadowed:
        raise ValueError(f"custom metric {shadowed[0]!r} shadows a built-in field; send it as that field")
    return custom


class TrainingMetricsData(WireModel):
    timestamp: datetime = Field(default_factory=utc_now)
    episode: int | None = Field(None, ge=0)
    total_episodes: int | None = Field(None, ge=0)
    current_reward: float | None = None
    average_reward: float | None = None
    best_reward: float | None = None
    episode_length: int | None = Field(None, ge=0)
    win_rate: float | None = Field(None, ge=0.0, le=100.0, description="percent, 0-100")
    loss_value: float | None = None
    learning_rate: float | None = Field(None, ge=0.0)
    epsilon: float | None = Field(None, ge=0.0, le=1.0)
    model_generation: int | None = Field(None, ge=0)
    algorithm: str | None = Field(None, max_length=64)
    training_time_elapsed: float | None = Field(None, ge=0.0)
    actions_per_second: float | None = Field(None, ge=0.0)
    frames_per_second: float | None = Field(None, ge=0.0)
    memory_usage_mb: float | None = Field(None, ge=0.0)
    custom: Annotated[dict[MetricName, float], AfterValidator(_does_not_shadow)] = Field(
        default_factory=dict, description="any other scalar, by name"
    )


SERIES_FIELDS: tuple[str, ...] = tuple(
    name
    for name, field in TrainingMetricsData.model_fields.items()
    if name not in {"timestamp", "custom", "algorithm", "episode"}
)


def as_typed_dict(model: type[BaseModel]) -> Any:
    """The model's fields and constraints as a TypedDict, every key optional (defaults are the caller's).

    pydantic validates and encodes a dict in half the time of a model instance, and ingest does that
    for every point; deriving it from the model keeps one definition. Model validators are not carried.
    """
    fields = {
        name: Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        for name, info in model.model_fields.items()
    }
    return with_config(model.model_config)(TypedDict(f"{model.__name__}Dict", fields, total=False))  # type: ignore[operator]


TrainingMetricsDict = as_typed_dict(TrainingMetricsData)


class BotDecisionData(WireModel):
    timestamp: datetime = Field(default_factory=utc_now)
    episode: int | None = Field(None, ge=0)
    step: int | None = Field(None, ge=0)
    action_probabilities: dict[str, Probability] | None = None
    state_values: float | list[float] | dict[str, float] | None = None
    q_values: list[float] | None = None
    selected_action: str | int | None = None
    confidence_score: Probability | None = None

    @field_validator("action_probabilities")
    @classmethod
    def _probabilities_sum_to_one(cls, probabilities: dict[str, float] | None) -> dict[str, float] | None:
        if probabilities:
            total = math.fsum(probabilities.values())
            if abs(total - 1.0) > 1e-3:
                raise ValueError(f"action probabilities must sum to 1 (within 1e-3), got {total:.6g}")
        return probabilities


class GraphPoint(WireModel):
    timestamp: datetime = Field(default_factory=utc_now)
    value: float


class PerformanceGraphData(WireModel):
    graph_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    title: str | None = Field(None, max_length=256)
    y_label: str | None = Field(None, max_length=128)
    metrics: list[MetricName] = Field(default_factory=list)
    data_points: dict[MetricName, list[GraphPoint]] = Field(default_factory=dict)
    max_points: int = Field(1000, gt=0, le=100_000, description="the server keeps the newest max_points per series")

    @model_validator(mode="after")
    def _points_name_declared_metrics(self) -> PerformanceGraphData:
        if self.metrics:
            undeclared = sorted(set(self.data_points) - set(self.metrics))
            if undeclared:
                raise ValueError(f"data_points has metric {undeclared[0]!r} that is not in metrics {self.metrics}")
        else:
            self.metrics = list(self.data_points)
        return self


class RoomSpec(WireModel):
    """A spectator room for the session: joined by its code, optionally with a password."""

    max_spectators: int = Field(50, gt=0, le=100_000)
    password_protected: bool = False
    password: str | None = Field(None, min_length=4, max_length=128, description="generated when protected and absent")


class SessionCreate(WireModel):
    training_id: SessionId | None = Field(None, description="becomes the session id; generated when absent")
    name: str | None = Field(None, max_length=256)
    algorithm: str | None = Field(None, max_length=64)
    model_generation: int | None = Field(None, ge=0)
    total_episodes: int | None = Field(None, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    room: RoomSpec | None = None


class SessionUpdate(WireModel):
    status: SessionStatus | None = None
    metadata: dict[str, Any] | None = Field(None, description="replaces the session's metadata")
    message: str | None = Field(None, max_length=1024, description="a reason, sent to spectators with the status")

    @model_validator(mode="after")
    def _something_to_update(self) -> SessionUpdate:
        if self.status is None and self.metadata is None:
            raise ValueError("nothing to update: give status, metadata or both")
        return self


class WsMessage(BaseModel):
    """The envelope of every message a spectator receives."""

    type: str
    session_id: str
    seq: int | None = None
    timestamp: datetime
    data: dict[str, Any] = Field(default_factory=dict)
