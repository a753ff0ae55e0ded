"""What JSON Schema cannot say, taught to schemathesis (loaded by test_openapi_auth.py via SCHEMATHESIS_HOOKS).

Two rules of the ingest bodies span several values, so a generator reading only the schema breaks them
about always, and the server's 422 would count as "a valid request refused":
- a decision's `action_probabilities` sum to 1 (within 1e-3);
- a graph update's `data_points` are named in its `metrics` when `metrics` is given.

A body is only changed where it already meets the schema there (every probability a number in [0, 1],
every metric a valid name), and the change keeps it so; so a body made invalid on purpose stays invalid.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")
MAX_GRAPH_SERIES = 64


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict):
            _probabilities_sum_to_one(item)
            _points_are_declared(item)
    return body


def _probabilities_sum_to_one(item: dict[str, Any]) -> None:
    probabilities = item.get("action_probabilities")
    if not isinstance(probabilities, dict) or not probabilities:
        return
    values = list(probabilities.values())
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
        return
    total = sum(values)
    first = next(iter(probabilities))
    for key in probabilities:
        probabilities[key] = probabilities[key] / total if total > 0 else float(key == first)


def _points_are_declared(item: dict[str, Any]) -> None:
    metrics, points = item.get("metrics"), item.get("data_points")
    if not isinstance(metrics, list) or not metrics or not isinstance(points, dict):
        return
    if len(metrics) > MAX_GRAPH_SERIES or not all(isinstance(m, str) and METRIC_NAME.match(m) for m in metrics):
        return
    item["metrics"] = []  # none given: the points name them
