"""`GET /metrics`: what the server does, in Prometheus' format, read by Prometheus' own parser."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, connect_and_sync, create_session, recv_data


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_metrics_count_what_the_server_does(live: LiveServer, client: httpx.AsyncClient, spectators: Any) -> None:
    session_id = await create_session(client, "measured")
    watcher = await connect_and_sync(spectators, live.ws_url(session_id))
    for episode in range(5):
        await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": episode})
    await recv_data(watcher, 5)
    await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": "bad"})
    samples = await scrape(client)

    route = "/api/training/sessions/{session_id}/metrics"
    assert samples[("tms_http_requests_total", (("method", "POST"), ("route", route), ("status", "200")))] == 5
    assert samples[("tms_http_requests_total", (("method", "POST"), ("route", route), ("status", "422")))] == 1
    assert samples[("tms_http_request_seconds_count", (("method", "POST"), ("route", route)))] == 6
    assert samples[("tms_points_ingested_total", ())] == 5
    assert samples[("tms_messages_fanned_out_total", ())] >= 5
    assert samples[("tms_spectators", ())] == 1 and samples[("tms_sessions_watched", ())] == 1
    assert samples[("tms_commit_seconds_count", ())] >= 6  # the session's creation and the five pushes
    assert samples[("tms_database_up", ())] == 1 and samples[("tms_broker_up", ())] == 1
    assert samples[("tms_sessions", (("state", "all"),))] == 1
    assert samples[("tms_spectator_frames_dropped_total", ())] == 0
    assert not [key for key in samples if session_id in str(key)]  # a label per session would never end
