"""A session's breadth is bounded: distinct metric series and graphs. A batch that would pass a bound is refused
whole with a 422 naming it, nothing of it is stored, and what the session holds keeps working."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.store import queries
from tests.conftest import TIMEOUT, create_session, recv_until

BASE = "/api/training/sessions"


async def test_series_and_graphs_per_session_are_bounded(server_factory: Any, settings: Settings) -> None:
    live = await server_factory(settings.model_copy(update={"max_series_per_session": 5, "max_graphs_per_session": 2}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "broad")
        metrics = f"{BASE}/{session_id}/metrics"
        assert (await client.post(metrics, json={"episode": 0, "custom": {"a": 1.0, "b": 2.0}})).status_code == 200
        assert (await client.post(metrics, json={"episode": 1, "custom": {"c": 1.0, "d": 2.0}})).status_code == 200
        refused = await client.post(metrics, json=[{"episode": 2, "custom": {"a": 3.0}}, {"custom": {"e": 1, "f": 1}}])
        assert refused.status_code == 422 and "max_series_per_session" in refused.text, refused.text
        assert (await client.post(metrics, json={"episode": 3, "custom": {"a": 4.0, "e": 5.0}})).status_code == 200

        graph = f"{BASE}/{session_id}/graph_update"
        for graph_id in ("g1", "g2", "g1"):
            response = await client.post(graph, json={"graph_id": graph_id, "data_points": {"x": [{"value": 1.0}]}})
            assert response.status_code == 200
        refused = await client.post(graph, json={"graph_id": "g3", "data_points": {"x": [{"value": 1.0}]}})
        assert refused.status_code == 422 and "max_graphs_per_session" in refused.text
        # The same shape as every other 422: `detail` lists the error with its `loc`, `message` sums it up.
        [error] = refused.json()["detail"]
        assert error["type"] == "session_limit" and error["loc"] == ["body"] and error["input"] == "g3", error
        assert "max_graphs_per_session" in error["msg"] and "max_graphs_per_session" in refused.json()["message"]

        session = (await client.get(f"{BASE}/{session_id}")).json()
        assert session["last_seq"] == 6  # the refused batches stored nothing and took no seq
        series = (await client.get(f"{BASE}/{session_id}/series", params={"metric": ["a", "e"]})).json()
        assert series["available"] == ["a", "b", "c", "d", "e"]
        assert [series["series"][name]["value"] for name in ("a", "e")] == [[1.0, 4.0], [5.0]]
        graphs = (await client.get(f"{BASE}/{session_id}/graphs")).json()["graphs"]
        assert [graph["graph_id"] for graph in graphs] == ["g1", "g2"]


async def test_a_snapshot_carries_a_bounded_number_of_graph_points(
    server_factory: Any, settings: Settings, spectators: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The points in a joining spectator's snapshot are bounded over all graphs, shared evenly across series
    (newest first); GET .../graphs still has them all."""
    monkeypatch.setattr(queries, "SNAPSHOT_GRAPH_POINTS_TOTAL", 6)
    live = await server_factory(settings)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "wide-graphs")
        points = {name: [{"value": float(i)} for i in range(10)] for name in ("x", "y", "z")}
        response = await client.post(f"{BASE}/{session_id}/graph_update", json={"graph_id": "g", "data_points": points})
        assert response.status_code == 200
        stored = (await client.get(f"{BASE}/{session_id}/graphs")).json()["graphs"][0]["data_points"]
        assert [len(stored[name]) for name in "xyz"] == [10, 10, 10]
    ws = await spectators(live.ws_url(session_id))
    snapshot = await recv_until(ws, "snapshot")
    shown = snapshot["data"]["graphs"][0]["data_points"]
    assert {name: [p["value"] for p in shown[name]] for name in "xyz"} == {name: [8.0, 9.0] for name in "xyz"}
