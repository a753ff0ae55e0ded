"""Whatever a log call accepts, the server's ingest takes.

The server refuses a whole batch for one bad item (all or nothing), so a value the SDK let through and the
server refused would cost the valid points sent with it: they would end in the spool's dead letters. Each
case below builds a log call's body with the SDK's own checks and, unless the SDK raised InvalidValueError
at once, reads it with the server's own ingest (`read_batch`, what a worker process runs).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, event, given, settings, strategies as st

from bot.schemas import MAX_EPOCH_SECONDS, RESERVED_METRIC_NAMES, SERIES_FIELDS
from bot.sdk.errors import InvalidValueError
from bot.sdk.fields import decision, graph_body, metrics_point, point_time
from bot.server.ingest.batches import read_batch

PARITY = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))

huge_ints = st.integers(min_value=-(2**80), max_value=2**80)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    huge_ints,
    st.sampled_from([0, 1, -1, 0.5, 2**63 - 1, 2**63, -(2**63), 1e308, -1e308, 10**400]),
)
texts = st.one_of(
    st.text(max_size=20),
    st.text(max_size=300),
    st.sampled_from(["", "a\x00b", "\ud800", "x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 256, "x" * 257]),
)
anything = st.one_of(st.none(), st.booleans(), numbers, texts, st.lists(numbers, max_size=3))
datetimes = st.datetimes(
    timezones=st.one_of(
        st.none(), st.just(UTC), st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-900, 900))
    )
)
times = st.one_of(
    numbers,
    st.floats(min_value=-2 * MAX_EPOCH_SECONDS, max_value=2 * MAX_EPOCH_SECONDS),
    datetimes,
    datetimes.map(lambda d: d.isoformat()),
    texts,
    st.sampled_from(["2026-12-06T10:00:00Z", "2026-12-06", "2026-12-06T10:00:00", "yesterday", MAX_EPOCH_SECONDS]),
)
metric_names = st.one_of(
    st.sampled_from([*SERIES_FIELDS, *sorted(RESERVED_METRIC_NAMES), "my_stat", "a/b:c-d.e", "9lives", "x" * 129]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,20}", fullmatch=True),
    texts,
)


def server_reads(message_type: str, item: dict[str, Any]) -> None:
    """The server's ingest of a batch of this one item; raises (RequestValidationError) where it refuses."""
    read_batch(message_type, orjson.dumps([item]), 10_000)


def sdk_or_server(message_type: str, build: Any) -> None:
    """Either the SDK refuses the call at once (InvalidValueError), or the server takes what it sends."""
    try:
        item = build()
    except InvalidValueError:
        event("refused by the SDK")
        return
    event("sent")
    try:
        server_reads(message_type, item)
    except RequestValidationError as exc:
        pytest.fail(f"the SDK sent {item!r}, which the server refuses: {exc.errors()}")


@PARITY
@given(fields=st.dictionaries(metric_names, st.one_of(st.floats(-1e6, 1e6), numbers, anything), max_size=5), when=times)
def test_log_metrics_sends_only_what_the_server_takes(fields: dict[str, Any], when: Any) -> None:
    sdk_or_server("training_metrics", lambda: metrics_point({**fields, "timestamp": when}, set()))


@PARITY
@given(custom=st.dictionaries(metric_names, numbers, max_size=4), algorithm=anything)
def test_custom_metrics_and_the_algorithm_too(custom: dict[str, Any], algorithm: Any) -> None:
    sdk_or_server("training_metrics", lambda: metrics_point({"custom": custom, "algorithm": algorithm}, set()))


action_keys = st.one_of(st.integers(min_value=-2, max_value=6), st.text(max_size=3), texts)
vectors = st.one_of(
    st.lists(numbers, max_size=5),
    st.dictionaries(action_keys, numbers, max_size=5),
    st.lists(numbers, max_size=5).map(lambda values: dict(enumerate(values))),
)


@PARITY
@given(
    probabilities=st.one_of(
        st.none(),
        st.dictionaries(action_keys, st.floats(min_value=0, max_value=1), max_size=4),
        st.builds(lambda key: {key: 1.0}, action_keys),
        st.just([0.25, 0.75]),
    ),
    q_values=st.one_of(st.none(), vectors),
    state_values=st.one_of(st.none(), numbers, vectors),
    selected_action=st.one_of(st.none(), st.integers(0, 10), anything),
    confidence=st.one_of(st.none(), st.floats(0, 1), numbers),
    episode=st.one_of(st.none(), st.integers(0, 10**6), numbers),
    step=st.one_of(st.none(), st.integers(0, 10**6), numbers),
    when=times,
)
def test_log_decision_sends_only_what_the_server_takes(
    probabilities: Any,
    q_values: Any,
    state_values: Any,
    selected_action: Any,
    confidence: Any,
    episode: Any,
    step: Any,
    when: Any,
) -> None:
    sdk_or_server(
        "bot_decision",
        lambda: decision(
            action_probabilities=probabilities,
            q_values=q_values,
            state_values=state_values,
            selected_action=selected_action,
            confidence_score=confidence,
            episode=episode,
            step=step,
            timestamp=point_time(when),
        ),
    )


@PARITY
@given(
    graph_id=st.one_of(st.from_regex(r"[a-z]{1,10}", fullmatch=True), texts),
    title=st.one_of(st.none(), st.text(max_size=20), texts, numbers),
    y_label=st.one_of(st.none(), st.text(max_size=20), texts),
    max_points=st.one_of(st.integers(min_value=1, max_value=100_000), st.integers(-5, 200_000), numbers),
    step=st.one_of(st.none(), numbers),
    values=st.dictionaries(metric_names, numbers, max_size=3),
)
def test_log_graph_sends_only_what_the_server_takes(
    graph_id: Any, title: Any, y_label: Any, max_points: Any, step: Any, values: dict[str, Any]
) -> None:
    header = (graph_id, title, y_label, max_points)
    sdk_or_server("graph_update", lambda: graph_body(header, step, None, values, set(), set()))


def test_the_cases_found_by_hand_raise_at_once() -> None:
    """What a user met (the fresh-clone review): each was sent, then refused with its valid neighbours."""
    for bad in (1e11, -1e11, math.nan, "yesterday", "2026-13-01T00:00:00Z"):
        with pytest.raises(InvalidValueError, match="timestamp"):
            metrics_point({"timestamp": bad, "episode": 1}, set())
    assert metrics_point({"timestamp": datetime(9999, 12, 31, tzinfo=UTC)}, set())["timestamp"].startswith("9999")
    for header in (("", None, None, 1000), ("g" * 129, None, None, 1000), ("g", "t" * 257, None, 1000)):
        with pytest.raises(InvalidValueError, match="log_graph"):
            graph_body(header, None, None, {"x": 1.0}, set(), set())
    with pytest.raises(InvalidValueError, match="max_points"):
        graph_body(("g", None, None, 100_001), None, None, {"x": 1.0}, set(), set())
    with pytest.raises(InvalidValueError, match="at most 64 series"):
        graph_body(("g", None, None, 1000), None, None, {f"s{i}": 1.0 for i in range(65)}, set(), set())
    for name in ("seq", "episode", "timestamp", "step"):
        with pytest.raises(InvalidValueError, match="built-in field or column"):
            metrics_point({"custom": {name: 1.0}}, set())
    with pytest.raises(InvalidValueError, match="built-in field or column"):
        metrics_point({"seq": 555}, set())


def test_q_values_by_action_number_travel_as_the_list_in_that_order() -> None:
    """A dict of Q-values by action number (ints, or their text) is the list indexed by action; a dict by
    action names cannot travel as a list, so it is refused naming q_values, never sent as its keys."""
    common = {
        "action_probabilities": None,
        "state_values": None,
        "selected_action": None,
        "confidence_score": None,
        "episode": None,
        "step": None,
        "timestamp": 1.0,
    }
    assert decision(q_values={1: 2.0, 0: 1.0}, **common)["q_values"] == [1.0, 2.0]
    assert decision(q_values={"0": 1.5, "1": -2.0}, **common)["q_values"] == [1.5, -2.0]
    for bad in ({0: 1.0, 2: 2.0}, {"left": 1.0, "right": 2.0}, {-1: 1.0}, {0: 1.0, "0": 2.0}):
        with pytest.raises(InvalidValueError, match="q_values"):
            decision(q_values=bad, **common)
