"""The policy over time: chosen actions and mean confidence per bucket of a session's decisions."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import create_session

BASE = "/api/training/sessions"


async def test_the_chosen_action_and_confidence_change_over_time(client: httpx.AsyncClient) -> None:
    session_id = await create_session(client, "policy")
    early = [{"step": i, "selected_action": "left", "confidence_score": 0.5} for i in range(150)]
    late = [{"step": i, "selected_action": "right", "confidence_score": 0.9} for i in range(150, 300)]
    for batch in (early, [{"episode": 1, "current_reward": 1.0}], late):  # a metric in between: seqs, not counts
        path = "bot_decision" if "step" in batch[0] else "metrics"
        assert (await client.post(f"{BASE}/{session_id}/{path}", json=batch)).status_code == 200
    body = (await client.get(f"{BASE}/{session_id}/decisions", params={"buckets": 2})).json()
    assert body["total"] == 300 and body["actions"] == ["left", "right"]
    first, second = body["buckets"]
    assert (first["chosen"], first["mean_confidence"]) == ({"left": 150, "right": 0}, 0.5)
    assert (second["chosen"], second["decisions"]) == ({"left": 0, "right": 150}, 150)
    assert second["mean_confidence"] == pytest.approx(0.9) and second["last_seq"] == 301


async def test_past_ten_actions_the_rest_are_other(client: httpx.AsyncClient) -> None:
    session_id = await create_session(client, "many")
    decisions = [{"selected_action": i % 12, "confidence_score": None} for i in range(120)]
    assert (await client.post(f"{BASE}/{session_id}/bot_decision", json=decisions)).status_code == 200
    body = (await client.get(f"{BASE}/{session_id}/decisions", params={"buckets": 1})).json()
    assert len(body["actions"]) == 11 and body["actions"][-1] == "other"
    (bucket,) = body["buckets"]
    assert bucket["chosen"]["other"] == 20 and sum(bucket["chosen"].values()) == 120
    assert bucket["mean_confidence"] is None


@pytest.mark.parametrize(("path", "params", "status"), [("nobody", {}, 404), ("empty", {"buckets": 0}, 422)])
async def test_decisions_of_no_session_or_bad_buckets(
    client: httpx.AsyncClient, path: str, params: dict[str, int], status: int
) -> None:
    await create_session(client, "empty")
    assert (await client.get(f"{BASE}/empty/decisions")).json()["buckets"] == []
    assert (await client.get(f"{BASE}/{path}/decisions", params=params)).status_code == status
