"""Exporting a session's history as CSV and JSON: every point, over several pages, streamed."""

from __future__ import annotations

import csv
import io

import httpx
import orjson
import pytest

from bot.server.api import export
from tests.conftest import create_session

BASE = "/api/training/sessions"


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 100, so that 1,050 points cross eleven of them (the server runs in this process)."""
    monkeypatch.setattr(export, "EXPORT_PAGE", 100)


async def run_with_history(client: httpx.AsyncClient) -> str:
    session_id = await create_session(client, "exported")
    points = [
        {
            "episode": e,
            "current_reward": float(e),
            "loss_value": "NaN" if e == 7 else 1 / (e + 1),
            "custom": {"kl": 0.5},
        }
        for e in range(1050)
    ]
    assert (await client.post(f"{BASE}/{session_id}/metrics", json=points)).status_code == 200
    await client.put(f"{BASE}/{session_id}", json={"status": "completed"})
    decision = {"selected_action": 1, "action_probabilities": {"0": 0.25, "1": 0.75}}
    assert (await client.post(f"{BASE}/{session_id}/bot_decision", json=decision)).status_code == 200
    return session_id


async def test_csv_has_a_row_per_point_and_a_column_per_metric(client: httpx.AsyncClient) -> None:
    session_id = await run_with_history(client)
    response = await client.get(f"{BASE}/{session_id}/export", params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="{session_id}.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["seq", "timestamp", "episode", "step", "current_reward", "kl", "loss_value"]
    assert len(rows) == 1050 and [int(r["seq"]) for r in rows] == list(range(1, 1051))
    assert rows[7]["loss_value"] == "NaN" and rows[1049]["current_reward"] == "1049.0" and rows[3]["kl"] == "0.5"


async def test_json_is_every_message_as_spectators_got_it(client: httpx.AsyncClient) -> None:
    session_id = await run_with_history(client)
    messages = (await client.get(f"{BASE}/{session_id}/export")).json()
    assert [m["seq"] for m in messages] == list(range(1, 1053))
    assert [m["type"] for m in messages[-2:]] == ["training_status", "bot_decision"]
    history = (await client.get(f"{BASE}/{session_id}/history", params={"limit": 5})).json()["messages"]
    assert messages[:5] == history
    decisions = (await client.get(f"{BASE}/{session_id}/export", params={"type": "bot_decision"})).json()
    assert [m["data"]["selected_action"] for m in decisions] == [1]


async def test_one_series_as_json_rows_within_an_episode_range(client: httpx.AsyncClient) -> None:
    session_id = await run_with_history(client)
    params = {"metric": "current_reward", "start_episode": 1000}
    rows = (await client.get(f"{BASE}/{session_id}/export", params=params)).json()
    assert len(rows) == 50 and set(rows[0]) == {"seq", "timestamp", "episode", "step", "current_reward"}
    assert rows[-1]["current_reward"] == 1049.0


async def test_rows_carry_the_engines_step_and_a_named_metric_only_where_it_was_logged(
    client: httpx.AsyncClient,
) -> None:
    """The README refuses a custom metric named `step` because exports give it a column of its own: they did
    not (the second review of stop 37), so a point logged by step alone had no place on the x axis. And rows
    of a metric named in `metric` are those of its points: a sparse metric (an evaluation every 100 steps)
    was a row for every point of the session, almost all empty."""
    session_id = await create_session(client, "stepped")
    points = [{"step": 10 * i, "current_reward": float(i)} for i in range(1, 201)]
    for point in points[99::100]:
        point["custom"] = {"eval_reward": point["current_reward"] * 2}
    assert (await client.post(f"{BASE}/{session_id}/metrics", json=points)).status_code == 200
    rows = list(csv.DictReader(io.StringIO((await client.get(f"{BASE}/{session_id}/export?format=csv")).text)))
    assert len(rows) == 200 and rows[0]["step"] == "10" and rows[0]["eval_reward"] == ""
    params = {"format": "csv", "metric": "eval_reward"}
    sparse = list(csv.DictReader(io.StringIO((await client.get(f"{BASE}/{session_id}/export", params=params)).text)))
    assert [(r["step"], r["eval_reward"]) for r in sparse] == [("1000", "200.0"), ("2000", "400.0")]
    as_json = (await client.get(f"{BASE}/{session_id}/export", params={"metric": "eval_reward"})).json()
    assert [(r["step"], r["eval_reward"]) for r in as_json] == [(1000, 200.0), (2000, 400.0)]


@pytest.mark.parametrize(
    ("path", "params", "status", "needle"),
    [
        ("exported", {"metric": "nope"}, 404, "no metric 'nope'"),
        ("exported", {"format": "xml"}, 422, "format"),
        ("exported", {"type": "everything"}, 422, "type"),
        ("missing", {}, 404, "missing"),
    ],
)
async def test_bad_export_requests_are_refused(
    client: httpx.AsyncClient, path: str, params: dict[str, str], status: int, needle: str
) -> None:
    await create_session(client, "exported")
    response = await client.get(f"{BASE}/{path}/export", params=params)
    assert response.status_code == status and needle in orjson.dumps(response.json()).decode()


@pytest.mark.parametrize("format", ["csv", "json"])
async def test_an_unknown_metric_is_a_404_that_names_the_session(client: httpx.AsyncClient, format: str) -> None:
    """Review 1 finding 11: a 404 carries `detail` and `session_id`, an unknown metric's as a missing
    session's, and the OpenAPI document's 404 of the route says it has both causes."""
    session_id = await run_with_history(client)
    response = await client.get(f"{BASE}/{session_id}/export", params={"format": format, "metric": "nope"})
    assert response.status_code == 404, response.text
    answer = response.json()
    assert answer["session_id"] == session_id and "no metric 'nope'" in answer["detail"], answer
    document = (await client.get("/openapi.json")).json()
    not_found = document["paths"]["/api/training/sessions/{session_id}/export"]["get"]["responses"]["404"]
    assert "metric" in not_found["description"] and "session_id" in str(not_found["content"]), not_found


async def test_an_unknown_metric_is_an_empty_series_for_a_chart(client: httpx.AsyncClient) -> None:
    """Unlike an export, /series answers a metric with no points (yet) with an empty series and `available`:
    a chart may ask before its metric's first point arrives, and extends it live."""
    session_id = await run_with_history(client)
    answer = (await client.get(f"{BASE}/{session_id}/series", params={"metric": "nope"})).json()
    assert answer["series"]["nope"]["seq"] == [] and "current_reward" in answer["available"], answer
