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


async def test_sparse_decisions_fill_buckets_that_mean_something(client: httpx.AsyncClient) -> None:
    """A decision now and then among dense metrics: each bucket holds at least `min_decisions` (neighbours
    merged, a short last one too), with its last decision's episode and time."""
    session_id = await create_session(client, "sparse")
    for episode in range(95):  # 20 metrics, then a decision: 95 decisions over 1,995 seqs
        metrics = [{"episode": episode, "current_reward": 1.0}] * 20
        assert (await client.post(f"{BASE}/{session_id}/metrics", json=metrics)).status_code == 200
        decision = {"episode": episode, "selected_action": episode % 2, "timestamp": 1_700_000_000 + episode}
        assert (await client.post(f"{BASE}/{session_id}/bot_decision", json=decision)).status_code == 200
    plain = (await client.get(f"{BASE}/{session_id}/decisions", params={"buckets": 200})).json()
    assert max(b["decisions"] for b in plain["buckets"]) == 1  # the default: a bucket per range of seqs
    body = (await client.get(f"{BASE}/{session_id}/decisions", params={"buckets": 200, "min_decisions": 20})).json()
    counts = [b["decisions"] for b in body["buckets"]]
    assert sum(counts) == 95 and min(counts) >= 20 and len(counts) == 4, counts
    last = body["buckets"][-1]
    assert last["episode"] == 94 and last["timestamp"] == 1_700_000_094
    assert sum(last["chosen"].values()) == last["decisions"] and set(last["chosen"]) == {"0", "1"}
    bad = await client.get(f"{BASE}/{session_id}/decisions", params={"min_decisions": 0})
    assert bad.status_code == 422 and "min_decisions" in bad.text


def test_a_short_bucket_takes_in_its_neighbours() -> None:
    from collections import Counter

    from bot.store.decisions import _merged

    def row(count: int, seq: int) -> dict[str, object]:
        chosen = Counter({"a": count})
        return {
            "count": count,
            "chosen": chosen,
            "confidence": [0.5 * count, count],
            "last_seq": seq,
            "episode": seq,
            "timestamp": seq,
        }

    merged = _merged([row(1, 1), row(1, 2), row(30, 3), row(6, 4), row(2, 5)], least=5)
    assert [(r["count"], r["last_seq"], r["chosen"]["a"]) for r in merged] == [(32, 3, 32), (8, 5, 8)]
    assert merged[0]["confidence"] == [16.0, 32]
    assert [r["count"] for r in _merged([row(3, 1)], least=5)] == [3]  # fewer than `least` in all: one bucket
