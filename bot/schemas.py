"""Wire models shared by the server, the SDK and the web page.

Non-finite floats (a diverging loss: NaN, Infinity, -Infinity) are real data. They are accepted as
JSON numbers (`NaN`, `Infinity`, as Python's json module writes them) or as the strings "NaN",
"Infinity" and "-Infinity", and they always travel out as those strings, because standard JSON
has no literal for them. Fields with a range (win_rate, epsilon, probabilities) reject them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
    with_config,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema
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
    # A training job's events (bot/server/training/jobs.py), written by the server into the job's session.
    "training_started",
    "training_progress",
    "training_completed",
    "training_stopped",
    "training_error",
    # The training daemon's runs (bot/server/training/daemon.py), in its well-known session `training-daemon`.
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
Number = Annotated[
    Annotated[float, Strict()] | Annotated[NonFinite, AfterValidator(float)], Field(union_mode="left_to_right")
]


EXACT_FLOAT_INTEGERS = 2**53  # past it a float cannot say which integer was meant (JSON parsers read 2**63+1 as one)


def _whole(value: float) -> int:
    if not value.is_integer() or abs(value) > EXACT_FLOAT_INTEGERS:
        raise ValueError("not a whole number that a float holds exactly")
    return int(value)


@dataclass(frozen=True)
class Whole:
    """An integer from `ge` to `le` that may also come as a whole float: JSON has one kind of number and JSON
    Schema calls 3.0 an integer, so `3.0` is 3 (clients that hold every number as a float are not refused).
    Strict otherwise: `true` and "3" are not integers. Only a float pays for a Python call; a float past 2**53
    is refused (write such an integer as an integer)."""

    ge: int
    le: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        bounded = core_schema.int_schema(ge=self.ge, le=self.le, strict=True)
        as_int = core_schema.no_info_plain_validator_function(_whole)
        whole_float = core_schema.chain_schema([core_schema.float_schema(strict=True), as_int, bounded])
        return core_schema.union_schema(
            [bounded, whole_float],
            mode="left_to_right",  # the first that fits: a smart union would try both on every value
            custom_error_type="whole_number",
            custom_error_message=f"Input should be a whole number from {self.ge} to {self.le}",
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "integer", "minimum": self.ge, "maximum": self.le}


MAX_EPOCH_SECONDS = 10**10  # year 2286; pydantic reads a number past 2e10 as milliseconds, so stop well short


def _utc_if_naive(value: datetime) -> datetime:
    """A time written without an offset is UTC, as `since` and `until` are: never the server's own zone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _zoned(value: datetime, info: core_schema.ValidationInfo) -> datetime:
    """From JSON (a string), as _utc_if_naive; a Python datetime without a zone is local time, Python's own
    convention (datetime.now()), kept as that instant."""
    if info.mode == "json" or value.tzinfo is not None:
        return _utc_if_naive(value)
    return value.astimezone(UTC)


class _Timestamp:
    """A point's time: an RFC 3339 string, or seconds since the epoch as a number (what the SDK sends), within
    ±MAX_EPOCH_SECONDS so that a number is never taken for milliseconds. A number is checked in Rust with no
    Python call; a string pays one, to give a time without an offset its zone (UTC)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        seconds = core_schema.float_schema(ge=-MAX_EPOCH_SECONDS, le=MAX_EPOCH_SECONDS, strict=True)
        text = core_schema.chain_schema([core_schema.str_schema(strict=True), core_schema.datetime_schema()])
        return core_schema.union_schema(
            [
                core_schema.chain_schema([seconds, core_schema.datetime_schema()]),
                # a datetime (from JSON: a string)
                core_schema.with_info_after_validator_function(_zoned, core_schema.datetime_schema(strict=True)),
                core_schema.no_info_after_validator_function(_utc_if_naive, text),
            ],
            mode="left_to_right",  # numbers (the SDK's) first; a smart union would try all three on every value
            custom_error_type="timestamp",
            custom_error_message=f"Input should be an RFC 3339 date-time or epoch seconds within ±{MAX_EPOCH_SECONDS}",
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        seconds = {"type": "number", "minimum": -MAX_EPOCH_SECONDS, "maximum": MAX_EPOCH_SECONDS}
        return {"anyOf": [{"type": "string", "format": "date-time"}, seconds], "description": "default: now"}


Timestamp = Annotated[datetime, _Timestamp]


# What the store can hold: integers are 64-bit signed in SQLite and PostgreSQL; JSON is nested at most
# MAX_DEPTH deep (orjson writes 255 levels, and nobody's metadata needs more than a few); strings are
# valid Unicode (a lone surrogate cannot be stored as UTF-8). A value past these must be refused here,
# with a 422 naming it, not by the database, where it would fail a commit shared with other requests.
INT64_MAX = 2**63 - 1
Count = Annotated[int, Whole(0, INT64_MAX)]
Int64 = Annotated[int, Whole(-INT64_MAX - 1, INT64_MAX)]
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
    """Text every backend can hold, refused here naming its field, so that both backends give one answer:
    PostgreSQL's text has no NUL character (SQLite's has)."""
    if not _encodes(value):
        raise ValueError("text holds a lone surrogate (not valid Unicode); it cannot be stored")
    if "\x00" in value:
        raise ValueError("text holds a NUL character (\\u0000), which the store cannot hold")
    return value


class _NoNul:
    """Says in the JSON schema what _storable_text refuses that a schema can say: a NUL character."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "pattern": "^[^\\u0000]*$"}


Storable = AfterValidator(_storable_text), _NoNul()
Text = Annotated[str, *Storable]
Text64 = Annotated[str, StringConstraints(max_length=64), *Storable]
Text128 = Annotated[str, StringConstraints(max_length=128), *Storable]
Text256 = Annotated[str, StringConstraints(max_length=256), *Storable]
Text1024 = Annotated[str, StringConstraints(max_length=1024), *Storable]

# A run's label, as W&B's tags: listed and filtered by. No quotes or backslashes, so a tag is found in the stored
# JSON list by its quoted text.
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/+@# -]+$")]
Tags = Annotated[
    list[Tag],
    Field(max_length=20, description="at most 20 labels of letters, digits, _.:/+@#- and spaces"),
    AfterValidator(lambda tags: list(dict.fromkeys(tags))),  # each once, in the order given
]
# At least 8 characters: a room password is all that guards the room (see bot/server/edge/admission.py).
Password = Annotated[str, StringConstraints(min_length=8, max_length=128), *Storable]


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


def _big_ints_as_floats(value: Any, depth: int = 0) -> Any:
    """An integer past 64 bits becomes the float JavaScript (and orjson) would read: JSON has one kind of
    number, so `1e30` and `1000000000000000000000000000000` are the same value, and both are kept."""
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"integer of {len(str(value))} digits is past what a float holds") from None
    if depth > MAX_DEPTH:  # refused by storable_problem
        return value
    if isinstance(value, dict):
        return {key: _big_ints_as_floats(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_big_ints_as_floats(item, depth + 1) for item in value]
    return value


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    value = _big_ints_as_floats(value)
    problem = storable_problem(value)
    if problem is not None:
        path, why = problem
        raise ValueError(f"at {'.'.join(map(str, path)) or 'top level'}: {why}")
    size = len(orjson.dumps(value))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{size} bytes as JSON; at most {MAX_METADATA_BYTES} (it is sent to every spectator)")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]

# What JsonObject holds, for the OpenAPI document (app.py puts it in as components/schemas/JsonValue).
# Recursive, so written here by hand: pydantic would need the recursive type to validate with, and
# validating metadata as dict[str, Any] and checking it in one pass is what keeps it cheap.
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": f"any JSON, at most {MAX_DEPTH} deep and {MAX_METADATA_BYTES} bytes; an integer past 64 bits is "
    "kept as a float",
    "anyOf": [
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
    ],
}


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
    shadowed = sorted(set(custom) & RESERVED_METRIC_NAMES)
    if shadowed:
        name = shadowed[0]
        if name in SERIES_FIELDS:
            raise ValueError(f"custom metric {name!r} shadows a built-in field; send it as that field")
        raise ValueError(
            f"custom metric {name!r} shadows a built-in field or column (`seq` and every field of a point)"
        )
    return custom


class TrainingMetricsData(WireModel):
    timestamp: Timestamp = Field(default_factory=utc_now)
    episode: Count | None = None
    step: Count | None = Field(
        None, description="the engine's own step (environment steps, say), as wandb.log's and TensorBoard's"
    )
    total_episodes: Count | None = None
    current_reward: Number | None = None
    average_reward: Number | None = None
    best_reward: Number | None = None
    episode_length: Count | None = None
    win_rate: float | None = Field(None, ge=0.0, le=100.0, strict=True, description="percent, 0-100")
    loss_value: Number | None = None
    learning_rate: float | None = Field(None, ge=0.0, strict=True)
    epsilon: float | None = Field(None, ge=0.0, le=1.0, strict=True)
    model_generation: Count | None = None
    algorithm: Text64 | None = None
    training_time_elapsed: float | None = Field(None, ge=0.0, strict=True)
    actions_per_second: float | None = Field(None, ge=0.0, strict=True)
    frames_per_second: float | None = Field(None, ge=0.0, strict=True)
    memory_usage_mb: float | None = Field(None, ge=0.0, strict=True)
    custom: Annotated[dict[MetricName, Number], AfterValidator(_does_not_shadow)] = Field(
        default_factory=dict,
        max_length=MAX_CUSTOM_METRICS,
        description="any other scalar, by name (not a built-in field's)",
        json_schema_extra=lambda schema: schema.update(
            additionalProperties=False,
            propertyNames={"not": {"enum": [name for name in sorted(RESERVED_METRIC_NAMES)]}},
        ),
    )


SERIES_FIELDS: tuple[str, ...] = tuple(
    name
    for name, field in TrainingMetricsData.model_fields.items()
    if name not in {"timestamp", "custom", "algorithm", "episode", "step"}
)
# No custom metric may take these names: an export's row has a column for seq and for each field of a point,
# and a series by one of them would be read as that column (a custom "seq" overwrote the real one).
RESERVED_METRIC_NAMES: frozenset[str] = frozenset({"seq", *TrainingMetricsData.model_fields})


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
    timestamp: Timestamp = Field(default_factory=utc_now)
    episode: Count | None = None
    step: Count | None = None
    action_probabilities: Annotated[dict[Text128, Probability], Field(max_length=MAX_ACTIONS)] | None = Field(
        None, description="summing to 1 (within 1e-3)"
    )
    state_values: (
        Number
        | Annotated[list[Number], Field(max_length=MAX_ACTIONS)]
        | Annotated[dict[Text128, Number], Field(max_length=MAX_ACTIONS)]
        | None
    ) = None
    q_values: Annotated[list[Number], Field(max_length=MAX_ACTIONS)] | None = None
    selected_action: Text256 | Int64 | None = None
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
    timestamp: Timestamp = Field(default_factory=utc_now)
    value: Number
    step: Count | None = Field(None, description="the engine's step at this point, as in training_metrics")
    episode: Count | None = None


class PerformanceGraphData(WireModel):
    graph_id: Annotated[str, StringConstraints(min_length=1, max_length=128), *Storable]
    title: Text256 | None = None
    y_label: Text128 | None = None
    metrics: list[MetricName] = Field(default_factory=list, max_length=MAX_GRAPH_SERIES)
    data_points: dict[MetricName, Annotated[list[GraphPoint], Field(max_length=100_000)]] = Field(
        default_factory=dict,
        max_length=MAX_GRAPH_SERIES,
        description="points by metric; each must be in `metrics` when `metrics` is given",
        json_schema_extra={"additionalProperties": False},
    )
    max_points: Annotated[int, Whole(1, 100_000)] = Field(
        1000, description="the server keeps the newest max_points per series"
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

    # What _no_password_for_an_open_room refuses, said in the schema too (OpenAPI clients and schemathesis).
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["password", "password_protected"],
                "properties": {"password": {"type": "string"}, "password_protected": {"const": False}},
            }
        }
    )

    max_spectators: Annotated[int, Whole(1, 100_000)] = 50
    password_protected: bool = Field(False, strict=True)
    password: Password | None = Field(None, description="generated when protected and absent")

    @model_validator(mode="after")
    def _no_password_for_an_open_room(self) -> RoomSpec:
        """A password makes the room protected; said together with `password_protected: false`, it is a
        contradiction, refused rather than guessed at."""
        if self.password is not None and not self.password_protected and "password_protected" in self.model_fields_set:
            raise ValueError("a password for a room that is not password_protected: drop one of them")
        return self


class SessionCreate(WireModel):
    training_id: SessionId | None = Field(None, description="becomes the session id; generated when absent")
    name: Text256 | None = None
    algorithm: Text64 | None = None
    model_generation: Count | None = None
    total_episodes: Count | None = None
    metadata: JsonObject = Field(default_factory=dict)
    tags: Tags = Field(default_factory=list)
    room: RoomSpec | None = None


class SessionUpdate(WireModel):
    # What the validator below requires, said in the schema too: a status or metadata, not null.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["status"], "properties": {"status": {"enum": [s.value for s in SessionStatus]}}},
                {"required": ["metadata"], "properties": {"metadata": {"type": "object"}}},
                {"required": ["tags"], "properties": {"tags": {"type": "array"}}},
            ]
        }
    )

    status: SessionStatus | None = None
    metadata: JsonObject | None = Field(None, description="replaces the session's metadata")
    tags: Tags | None = Field(None, description="replaces the session's tags")
    message: Text1024 | None = Field(None, description="a reason, sent to spectators with the status")

    @model_validator(mode="after")
    def _something_to_update(self) -> SessionUpdate:
        if self.status is None and self.metadata is None and self.tags is None:
            raise ValueError("nothing to update: give status, metadata, tags, or several")
        return self


class WsMessage(BaseModel):
    """The envelope of every message a spectator receives."""

    type: str
    session_id: str
    seq: int | None = None
    timestamp: datetime
    data: dict[str, Any] = Field(default_factory=dict)
