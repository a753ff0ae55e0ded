"""Cheap validation at the log call: the checks the server would make, in a few hundred nanoseconds.

A pydantic model per call would cost the training loop microseconds; these plain checks catch the
same mistakes (unknown type, out-of-range value, bad name) so that they raise in the caller, and the
server validates again anyway.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Annotated, Any, get_args, get_origin

from bot.schemas import MAX_CUSTOM_METRICS, SERIES_FIELDS, TrainingMetricsData

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
        if not NAME.match(name):
            raise InvalidValueError(f"metric name {name!r}: use letters, digits and _ . : / - (at most 128)")
        known.add(name)


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
            elif cls is int and (low is None or value >= low) and (high is None or value <= high):
                point[name] = value
                continue
            if value is not None:
                point[name] = number(name, value, kind, low, high)
        elif name == "timestamp" or name == "algorithm":
            point[name] = value
        elif name == "custom":
            for key, item in dict(value).items():
                metric_name(key, known)
                custom[key] = number(key, item)
        else:
            metric_name(name, known)
            custom[name] = number(name, value)
    if custom:
        if len(custom) > MAX_CUSTOM_METRICS:
            raise InvalidValueError(f"{len(custom)} custom metrics in one point; at most {MAX_CUSTOM_METRICS}")
        point["custom"] = custom
    return point
