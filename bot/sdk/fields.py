"""Cheap validation at the log call: the checks the server would make, in a few hundred nanoseconds.

A pydantic model per call would cost the training loop microseconds; these plain checks catch the
same mistakes (unknown type, out-of-range value, bad name) so that they raise in the caller, and the
server validates again anyway.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, get_args, get_origin

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from bot.schemas import (
    INT64_MAX,
    MAX_ACTIONS,
    MAX_CUSTOM_METRICS,
    MAX_EPOCH_SECONDS,
    MAX_GRAPH_SERIES,
    RESERVED_METRIC_NAMES,
    SERIES_FIELDS,
    BotDecisionData,
    PerformanceGraphData,
    Timestamp,
    TrainingMetricsData,
)

from .errors import InvalidValueError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")


def _bounds(model: Any, name: str) -> tuple[type, float | None, float | None]:
    field = model.model_fields[name]
    rules = list(field.metadata)
    types = []
    for option in (field.annotation, *get_args(field.annotation)):
        if get_origin(option) is Annotated:  # `Count | None`: the rules are on the inner Annotated
            option, *inner = get_args(option)
            rules += inner
        types.append(option)
    low = high = None
    for rule in rules:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return (int if int in types else float), low, high


# name -> (type, min, max), derived from the wire model so the two never disagree.
METRIC_FIELDS: dict[str, tuple[type, float | None, float | None]] = {
    name: _bounds(TrainingMetricsData, name) for name in (*SERIES_FIELDS, "episode", "step")
}
# name -> the ints taken as they are: the field's range within 64 bits (what JSON carries).
INT_RANGES: dict[str, tuple[float, float]] = {
    name: (-INT64_MAX - 1 if low is None else low, INT64_MAX if high is None else high)
    for name, (_, low, high) in METRIC_FIELDS.items()
}
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def number(name: str, value: Any, kind: type = float, low: float | None = None, high: float | None = None) -> Any:
    """Return `value` ready for JSON: non-finite floats become the strings the server understands."""
    cls = type(value)
    if cls is not float and cls is not int:
        value = _plain(name, value)
    if kind is int and type(value) is float:
        if not value.is_integer():
            raise InvalidValueError(f"metric {name!r}: expected an integer, got {value!r}")
        value = int(value)
    if type(value) is float and not math.isfinite(value):
        if low is not None or high is not None:
            raise InvalidValueError(f"metric {name!r}: must be finite (range {low}..{high}), got {value!r}")
        return "NaN" if value != value else NON_FINITE[value]
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidValueError(f"metric {name!r}: must be within {low}..{high}, got {value!r}")
    if type(value) is int and not -INT64_MAX - 1 <= value <= INT64_MAX:  # JSON (orjson) carries 64 bits
        if kind is int:
            raise InvalidValueError(f"metric {name!r}: must fit in 64 bits, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise InvalidValueError(f"metric {name!r}: too large for a float, got {value!r}") from None
    return value


def _plain(name: str, value: Any) -> int | float:
    """numpy and torch scalars (anything with .item()) and other real numbers; never bools or strings."""
    if hasattr(value, "item") and not isinstance(value, (bool, str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError) as exc:
            raise InvalidValueError(f"metric {name!r}: expected a scalar, got {value!r}") from exc
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidValueError(f"metric {name!r}: expected a number, got {value!r}")
    if isinstance(value, int):
        return int(value)
    return float(value)


def metric_name(name: str, known: set[str]) -> None:
    if name not in known:
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidValueError(f"metric name {name!r}: use letters, digits and _ . : / - (at most 128)")
        known.add(name)


def custom_name(name: str, known: set[str]) -> None:
    """A custom metric's name: as metric_name, and none the server keeps for a point's fields and `seq`."""
    if name not in known:
        if name in RESERVED_METRIC_NAMES:
            raise InvalidValueError(f"custom metric {name!r}: the name of a built-in field or column; choose another")
        metric_name(name, known)


def text(name: str, value: Any, limit: int) -> str:
    """Text the server stores: a str of at most `limit` characters, valid Unicode, no NUL (schemas.Text...)."""
    if type(value) is not str:
        raise InvalidValueError(f"{name}: expected a string, got {value!r}"[:300])
    if len(value) > limit or "\x00" in value or not _encodes(value):
        raise InvalidValueError(f"{name}: at most {limit} characters of valid Unicode without NUL, got {value!r}"[:300])
    return value


def _encodes(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


_POINT_TIME: TypeAdapter[Any] = TypeAdapter(Timestamp)


def point_time(value: Any) -> Any:
    """A point's time as the server takes it: epoch seconds within ±MAX_EPOCH_SECONDS (a number, numpy's too),
    a datetime (one without a zone is local time, Python's convention) or an RFC 3339 string."""
    if isinstance(value, datetime):
        try:
            value = value.astimezone().isoformat()
        except (OverflowError, ValueError):  # year 1 in a zone east of UTC, say
            raise InvalidValueError(f"timestamp {value!r}: out of range") from None
    if isinstance(value, str):
        server_takes(_POINT_TIME, "timestamp", value)
        return value
    return number("timestamp", value, float, -MAX_EPOCH_SECONDS, MAX_EPOCH_SECONDS)


def server_takes(adapter: TypeAdapter[Any], name: str, value: Any) -> None:
    """Check `value` with the server's own validation, as JSON, as the server reads it: for what is logged
    rarely (a run's settings, a graph's title) or seldom takes the slow path; a few microseconds."""
    try:
        adapter.validate_json(orjson.dumps(value))
    except TypeError as exc:  # orjson.JSONEncodeError too: not JSON at all
        raise InvalidValueError(f"{name}: cannot be sent as JSON ({exc})") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in (name, *error["loc"]))
        raise InvalidValueError(f"{where}: {error['msg']}"[:300]) from None


def model_takes(model: type[BaseModel], name: str, body: dict[str, Any]) -> None:
    """As server_takes, for a whole body of a model (a session's settings, a status update)."""
    server_takes(_adapter(model), name, body)


@functools.cache
def _adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def metrics_point(fields: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """A TrainingMetricsData body from log_metrics(**fields); unknown names become custom scalars."""
    point: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for name, value in fields.items():
        spec = METRIC_FIELDS.get(name)
        if spec is not None:
            kind, low, high = spec
            cls = type(value)
            # Fast path for the common case: a finite float, or an int, already within its range.
            if cls is float and kind is float and value - value == 0:
                if (low is None or value >= low) and (high is None or value <= high):
                    point[name] = value
                    continue
            elif cls is int and INT_RANGES[name][0] <= value <= INT_RANGES[name][1]:
                point[name] = value
                continue
            if value is not None:
                point[name] = number(name, value, kind, low, high)
        elif name == "timestamp":
            point[name] = point_time(value)
        elif name == "algorithm":
            if value is not None:
                point[name] = text("algorithm", value, 64)
        else:
            _add_custom(custom, value if name == "custom" else {name: value}, known)
    if custom:
        if len(custom) > MAX_CUSTOM_METRICS:
            raise InvalidValueError(f"{len(custom)} custom metrics in one point; at most {MAX_CUSTOM_METRICS}")
        point["custom"] = custom
    return point


def _add_custom(custom: dict[str, Any], values: Any, known: set[str]) -> None:
    if values is None:
        return
    if not isinstance(values, Mapping):
        raise InvalidValueError(f"custom: expected a dict of metric name to number, got {type(values).__name__}")
    for key, item in values.items():
        custom_name(key, known)
        custom[key] = number(key, item)


def decision(
    *,
    action_probabilities: Any,
    q_values: Any,
    state_values: Any,
    selected_action: Any,
    confidence_score: Any,
    episode: Any,
    step: Any,
    timestamp: Any,
) -> dict[str, Any]:
    """A BotDecisionData body from log_decision's arguments, checked as the server checks it."""
    fields: dict[str, Any] = {"timestamp": timestamp}
    if action_probabilities is not None:
        probabilities = {
            action_name("action_probabilities", k): number(f"action_probabilities.{k}", v, float, 0.0, 1.0)
            for k, v in _by_action("action_probabilities", action_probabilities).items()
        }
        total = sum(probabilities.values())
        if abs(total - 1.0) > 1e-3:
            raise InvalidValueError(f"action_probabilities must sum to 1 (within 1e-3), got {total:.6g}")
        fields["action_probabilities"] = probabilities
    if q_values is not None:
        fields["q_values"] = [number("q_values", v) for v in _by_number("q_values", q_values)]
    if state_values is not None:
        fields["state_values"] = _state_values(state_values)
    if confidence_score is not None:
        fields["confidence_score"] = number("confidence_score", confidence_score, float, 0.0, 1.0)
    if selected_action is not None:
        fields["selected_action"] = _selected_action(selected_action)
    for name, value in (("episode", episode), ("step", step)):
        if value is not None:
            fields[name] = number(name, value, int, 0, INT64_MAX)
    return fields


_SELECTED_ACTION: TypeAdapter[Any] = TypeAdapter(BotDecisionData.model_fields["selected_action"].annotation)


def _selected_action(value: Any) -> Any:
    """An action's name (at most 256 characters) or number (64 bits), numpy's and torch's scalars too."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if type(value) is int and -INT64_MAX - 1 <= value <= INT64_MAX:
        return value
    if type(value) is str:
        return text("selected_action", value, 256)
    server_takes(_SELECTED_ACTION, "selected_action", value)
    return value


def action_name(name: str, key: Any) -> str:
    return text(f"{name} key", str(key), 128)


def _vector(name: str, values: Any) -> list[Any]:
    """A list, tuple, numpy array or torch tensor of numbers, one dimension (a batch of one is flattened)."""
    if hasattr(values, "detach"):  # a torch tensor: off the autograd graph (and the GPU) first
        values = values.detach().cpu()
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, int | float):
        raise InvalidValueError(f"{name}: expected a sequence of numbers, got the single number {values!r}")
    try:
        items = list(values)
    except TypeError:
        raise InvalidValueError(f"{name}: expected a sequence of numbers, got {type(values).__name__}") from None
    if len(items) == 1 and isinstance(items[0], list):
        items = items[0]  # shape (1, n): one state's values
    if any(isinstance(item, list | tuple | dict) for item in items):
        raise InvalidValueError(f"{name}: expected one dimension (one value per action), got nested sequences")
    _at_most_actions(name, items)
    return items


def _at_most_actions(name: str, values: Any) -> Any:
    if len(values) > MAX_ACTIONS:
        raise InvalidValueError(f"{name}: at most {MAX_ACTIONS} actions, got {len(values)}")
    return values


def _by_action(name: str, values: Any) -> dict[str, Any]:
    """A dict by action name, or a sequence indexed by action number."""
    if isinstance(values, dict):
        return {str(k): v for k, v in _at_most_actions(name, values).items()}
    return {str(i): v for i, v in enumerate(_vector(name, values))}


def _by_number(name: str, values: Any) -> list[Any]:
    """A sequence indexed by action number, or a dict by action number (0, 1, ... n-1, as ints or as their
    text): q_values travel as a list, so a dict by action names cannot be sent."""
    if not isinstance(values, dict):
        return _vector(name, values)
    by_number: dict[int, Any] = {}
    for key, value in _at_most_actions(name, values).items():
        number_key = int(key.item() if hasattr(key, "item") else key) if _is_action_number(key) else None
        if number_key is None or number_key in by_number:
            raise InvalidValueError(
                f"{name}: a dict's keys must be the action numbers 0, 1, ... (they travel as a list), got {key!r}"[:300]
            )
        by_number[number_key] = value
    if sorted(by_number) != list(range(len(by_number))):
        raise InvalidValueError(f"{name}: a dict's keys must be the action numbers 0 to {len(by_number) - 1}")
    return [by_number[i] for i in range(len(by_number))]


def _is_action_number(key: Any) -> bool:
    if hasattr(key, "item") and not isinstance(key, str):
        key = key.item()
    if isinstance(key, bool):
        return False
    return isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 19)


def _state_values(values: Any) -> Any:
    if isinstance(values, dict):
        return {
            action_name("state_values", k): number(f"state_values.{k}", v)
            for k, v in _at_most_actions("state_values", values).items()
        }
    if isinstance(values, int | float) or (hasattr(values, "item") and getattr(values, "ndim", 1) == 0):
        return number("state_values", values)
    return [number("state_values", v) for v in _vector("state_values", values)]


def graph_body(
    header: tuple[Any, Any, Any, Any],
    step: Any,
    episode: Any,
    values: dict[str, Any],
    known: set[str],
    checked_headers: set[tuple[Any, ...]],
) -> dict[str, Any]:
    """A graph update's body from log_graph's arguments: one point per series, at this time. Its header
    (graph_id, title, y_label, max_points) is checked by the server's own model, once per run for each
    different header (`checked_headers`), not at every point."""
    point: dict[str, Any] = {"timestamp": time.time()}
    for name, position in (("step", step), ("episode", episode)):
        if position is not None:
            point[name] = number(name, position, int, 0, INT64_MAX)
    if len(values) > MAX_GRAPH_SERIES:
        raise InvalidValueError(f"log_graph: at most {MAX_GRAPH_SERIES} series in one call, got {len(values)}")
    points = {}
    for name, value in values.items():
        metric_name(name, known)
        points[name] = [{**point, "value": number(name, value)}]
    graph_id, title, y_label, max_points = header
    body: dict[str, Any] = {"graph_id": graph_id, "max_points": max_points}
    if title is not None:
        body["title"] = title
    if y_label is not None:
        body["y_label"] = y_label
    try:
        seen = header in checked_headers
    except TypeError:  # unhashable: a title that is a list, say, which the model refuses below
        seen = False
    if not seen:
        model_takes(PerformanceGraphData, "log_graph", body)
        checked_headers.add(header)
    body["data_points"] = points
    return body
