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
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
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
MessageType = Literal[
    "training_metrics",
    "bot_decision",
    "graph_update",
    "training_status",
    # A training job's events (bot/server/jobs.py), written by the server into the job's session.
    "training_started",
    "training_progress",
    "training_completed",
    "training_stopped",
    "training_error",
    # The training daemon's runs (bot/server/daemon.py), in its well-known session `training-daemon`.
    "rl_v3.training.started",
    "rl_v3.training.completed",
]
MESSAGE_TYPES: tuple[str, ...] = get_args(MessageType)

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0, strict=True)]
# Strict types: `false` is not a number, `0` is not a boolean, "1.5" is not a float. A number without a
# range may also be one of the strings that stand for the non-finite floats (made a float; only those
# strings pay for a Python call).
NonFinite = Literal["NaN", "Infinity", "-Infinity"]
Number = Annotated[float, Strict()] | Annotated[NonFinite, AfterValidator(float)]

# What the store can hold: integers are 64-bit signed in SQLite and PostgreSQL; JSON is nested at most
# MAX_DEPTH deep (orjson writes 255 levels, and nobody's metadata needs more than a few); strings are
# valid Unicode (a lone surrogate cannot be stored as UTF-8). A value past these must be refused here,
# with a 422 naming it, not by the database, where it would fail a commit shared with other requests.
INT64_MAX = 2**63 - 1
MAX_DEPTH = 64
# What one message may carry: every spectator receives it, and a snapshot carries the latest again.
MAX_METADATA_BYTES = 65_536
MAX_CUSTOM_METRICS = 256  # per point
MAX_ACTIONS = 4096  # entries of action_probabilities, q_values, state_values
MAX_GRAPH_SERIES = 64  # per graph update


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _storable_text(value: str) -> str:
    if not _encodes(value):
        raise ValueError("text holds a lone surrogate (not valid Unicode); it cannot be stored")
    return value


Text = Annotated[str, AfterValidator(_storable_text)]
Text64 = Annotated[str, StringConstraints(max_length=64), AfterValidator(_storable_text)]
Text128 = Annotated[str, StringConstraints(max_length=128), AfterValidator(_storable_text)]
Text256 = Annotated[str, StringConstraints(max_length=256), AfterValidator(_storable_text)]
Text1024 = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_storable_text)]
# At least 8 characters: a room password is all that guards the room (see bot/server/admission.py).
Password = Annotated[str, StringConstraints(min_length=8, max_length=128), AfterValidator(_storable_text)]


def storable_problem(value: Any, depth: int = 0) -> tuple[tuple[str | int, ...], str] | None:
    """The first part of a JSON value that the store cannot hold, as (path within it, why), or None."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        return None if -INT64_MAX - 1 <= value <= INT64_MAX else ((), f"integer {value} is outside 64-bit range")
    if isinstance(value, str):
        return None if _encodes(value) else ((), "text holds a lone surrogate (not valid Unicode)")
    if depth >= MAX_DEPTH and isinstance(value, dict | list):
        return (), f"nested deeper than {MAX_DEPTH} levels"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and not _encodes(key):
            return (key,), "key holds a lone surrogate (not valid Unicode)"
        problem = storable_problem(item, depth + 1)
        if problem is not None:
            return (key, *problem[0]), problem[1]
    return None


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    problem = storable_problem(value)
    if problem is not None:
        path, why = problem
        raise ValueError(f"at {'.'.join(map(str, path)) or 'top level'}: {why}")
    size = len(orjson.dumps(value))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{size} bytes as JSON; at most {MAX_METADATA_BYTES} (it is sent to every spectator)")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]


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


def _does_not_shadow(custom: dict[str, Any]) -> dict[str, Any]:
    shadowed = sorted(set(custom) & set(SERIES_FIELDS))
    if shadowed:
        raise ValueError(f"custom metric {shadowed[0]!r} shadows a built-in field; send it as that field")
    return custom


class TrainingMetricsData(WireModel):
    timestamp: datetime = Field(default_factory=utc_now)
    episode: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    total_episodes: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    current_reward: Number | None = None
    average_reward: Number | None = None
    best_reward: Number | None = None
    episode_length: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    win_rate: float | None = Field(None, ge=0.0, le=100.0, strict=True, description="percent, 0-100")
    loss_value: Number | None = None
    learning_rate: float | None = Field(None, ge=0.0, strict=True)
    epsilon: float | None = Field(None, ge=0.0, le=1.0, strict=True)
    model_generation: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    algorithm: Text64 | None = None
    training_time_elapsed: float | None = Field(None, ge=0.0, strict=True)
    actions_per_second: float | None = Field(None, ge=0.0, strict=True)
    frames_per_second: float | None = Field(None, ge=0.0, strict=True)
    memory_usage_mb: float | None = Field(None, ge=0.0, strict=True)
    custom: Annotated[dict[MetricName, Number], AfterValidator(_does_not_shadow)] = Field(
        default_factory=dict, max_length=MAX_CUSTOM_METRICS, description="any other scalar, by name"
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
    episode: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    step: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    action_probabilities: Annotated[dict[Text128, Probability], Field(max_length=MAX_ACTIONS)] | None = None
    state_values: (
        Number
        | Annotated[list[Number], Field(max_length=MAX_ACTIONS)]
        | Annotated[dict[Text128, Number], Field(max_length=MAX_ACTIONS)]
        | None
    ) = None
    q_values: Annotated[list[Number], Field(max_length=MAX_ACTIONS)] | None = None
    selected_action: Text256 | Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX, strict=True)] | None = None
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
    value: Number


class PerformanceGraphData(WireModel):
    graph_id: Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_storable_text)]
    title: Text256 | None = None
    y_label: Text128 | None = None
    metrics: list[MetricName] = Field(default_factory=list, max_length=MAX_GRAPH_SERIES)
    data_points: dict[MetricName, Annotated[list[GraphPoint], Field(max_length=100_000)]] = Field(
        default_factory=dict, max_length=MAX_GRAPH_SERIES
    )
    max_points: int = Field(
        1000, gt=0, le=100_000, strict=True, description="the server keeps the newest max_points per series"
    )

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

    max_spectators: int = Field(50, gt=0, le=100_000, strict=True)
    password_protected: bool = Field(False, strict=True)
    password: Password | None = Field(None, description="generated when protected and absent")


class SessionCreate(WireModel):
    training_id: SessionId | None = Field(None, description="becomes the session id; generated when absent")
    name: Text256 | None = None
    algorithm: Text64 | None = None
    model_generation: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    total_episodes: int | None = Field(None, ge=0, le=INT64_MAX, strict=True)
    metadata: JsonObject = Field(default_factory=dict)
    room: RoomSpec | None = None


class SessionUpdate(WireModel):
    status: SessionStatus | None = None
    metadata: JsonObject | None = Field(None, description="replaces the session's metadata")
    message: Text1024 | None = Field(None, description="a reason, sent to spectators with the status")

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
