"""A session's summary: exact count, last, minimum, maximum and mean of the newest 100 points per metric."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import create_session

BASE = "/api/training/sessions"


async def test_summary_is_exact_for_dense_sparse_and_nan_metrics(client: httpx.AsyncClient) -> None:
    session_id = await create_session(client, "summed")
    rewards = [float((e * 37) % 101) for e in range(1000)]
    points = []
    for e, reward in enumerate(rewards):
        point = {"episode": e, "current_reward": reward, "loss_value": "NaN" if e == 999 else 1 / (e + 1)}
        if e % 50 == 0:
            point["custom"] = {"eval": float(e)}
        points.append(point)
    for start in range(0, 1000, 250):  # several commits, several rollup blocks
        assert (await client.post(f"{BASE}/{session_id}/metrics", json=points[start : start + 250])).status_code == 200
    summary = (await client.get(f"{BASE}/{session_id}/summary")).json()["metrics"]
    reward = summary["current_reward"]
    assert (reward["count"], reward["min"], reward["max"], reward["last"]) == (1000, 0.0, 100.0, rewards[-1])
    assert reward["last_episode"] == 999 and reward["recent_count"] == 100
    assert reward["recent_mean"] == pytest.approx(sum(rewards[-100:]) / 100)
    loss = summary["loss_value"]
    assert loss["nan_count"] == 1 and loss["last"] == pytest.approx(1 / 999) and loss["min"] == pytest.approx(1 / 999)
    assert loss["recent_mean"] == pytest.approx(sum(1 / (e + 1) for e in range(899, 999)) / 100)
    sparse = summary["eval"]
    assert (sparse["count"], sparse["last"], sparse["recent_count"]) == (20, 950.0, 20)
    assert sparse["recent_mean"] == pytest.approx(sum(range(0, 1000, 50)) / 20)


async def test_summary_of_an_empty_and_of_an_unknown_session(client: httpx.AsyncClient) -> None:
    session_id = await create_session(client, "empty")
    assert (await client.get(f"{BASE}/{session_id}/summary")).json()["metrics"] == {}
    assert (await client.get(f"{BASE}/nobody/summary")).status_code == 404


async def test_infinite_values_are_summed_up_as_the_strings_they_travel_as(client: httpx.AsyncClient) -> None:
    """README "Non-finite values": they always go out as "Infinity" and "-Infinity" (orjson wrote null)."""
    session_id = await create_session(client, "diverged")
    points = [{"episode": 0, "loss_value": 1.0}, {"episode": 1, "loss_value": "-Infinity"}]
    points += [{"episode": 2, "loss_value": "Infinity"}]
    assert (await client.post(f"{BASE}/{session_id}/metrics", json=points)).status_code == 200
    loss = (await client.get(f"{BASE}/{session_id}/summary")).json()["metrics"]["loss_value"]
    assert (loss["min"], loss["max"], loss["last"]) == ("-Infinity", "Infinity", "Infinity")
    assert loss["recent_mean"] == "NaN" and loss["recent_count"] == 3  # inf - inf: the mean is undefined


async def test_summary_and_decisions_show_an_acknowledged_push_and_never_a_deleted_run(
    client: httpx.AsyncClient,
) -> None:
    """The run panel's reads are shared by every reader for a moment, but what a reader gets never misses a
    push that was acknowledged before it asked, and never a deleted session's data after the session was
    created again (the second review of stop 37: both held for 2 s)."""
    base = "/api/training/sessions/shared-reads"
    await client.post("/api/training/sessions", json={"training_id": "shared-reads"})
    await client.post(f"{base}/metrics", json={"episode": 1, "current_reward": 1.0, "custom": {"old_metric": 1.0}})
    await client.post(f"{base}/bot_decision", json={"action_probabilities": {"left": 1.0}, "selected_action": "left"})
    first = (await client.get(f"{base}/summary")).json()
    assert first["metrics"]["current_reward"]["last"] == 1.0
    assert (await client.get(f"{base}/decisions")).json()["actions"] == ["left"]
    await client.post(f"{base}/metrics", json={"episode": 2, "current_reward": 100.0})
    assert (await client.get(f"{base}/summary")).json()["metrics"]["current_reward"]["last"] == 100.0
    assert (await client.delete(base)).status_code == 200
    await client.post("/api/training/sessions", json={"training_id": "shared-reads"})
    await client.post(f"{base}/metrics", json={"episode": 1, "custom": {"new_metric": 2.0}})
    await client.post(f"{base}/bot_decision", json={"action_probabilities": {"right": 1.0}, "selected_action": "right"})
    assert set((await client.get(f"{base}/summary")).json()["metrics"]) == {"new_metric"}
    assert (await client.get(f"{base}/decisions")).json()["actions"] == ["right"]
