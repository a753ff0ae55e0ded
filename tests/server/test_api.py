"""The REST API against a real server: sessions, ingest, history, health, and every bad input."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import orjson
import pytest

from bot.server.api.bodies import count_items
from tests.conftest import LiveServer, close_code, create_session, recv_json

BASE = "/api/training/sessions"
JSON = {"Content-Type": "application/json"}  # a body without it is refused (bot/server/edge/browsers.py)


async def last_seq(client: httpx.AsyncClient, session_id: str) -> int:
    seq: int = (await client.get(f"{BASE}/{session_id}")).json()["last_seq"]
    return seq


async def test_session_lifecycle(client: httpx.AsyncClient) -> None:
    """Create, read, list, update and delete a session."""
    created = (
        await client.post(
            BASE, json={"name": "cartpole", "algorithm": "DQN", "total_episodes": 10, "metadata": {"lr": 0.001}}
        )
    ).json()
    session_id = created["session_id"]
    assert created["status"] == "created" and created["metadata"] == {"lr": 0.001} and created["last_seq"] == 0
    assert (await client.get(f"{BASE}/{session_id}")).json()["name"] == "cartpole"

    updated = (await client.put(f"{BASE}/{session_id}", json={"status": "completed", "metadata": {"lr": 0.01}})).json()
    assert updated["status"] == "completed" and updated["ended_at"] is not None and updated["metadata"] == {"lr": 0.01}
    assert session_id not in [s["session_id"] for s in (await client.get(BASE)).json()["sessions"]]
    done = (await client.get(BASE, params={"status": "completed"})).json()
    assert [s["session_id"] for s in done["sessions"]] == [session_id] and done["total"] == 1

    assert (await client.delete(f"{BASE}/{session_id}")).json() == {"session_id": session_id, "deleted": True}
    assert (await client.get(f"{BASE}/{session_id}")).status_code == 404


async def test_list_is_paginated_newest_first(client: httpx.AsyncClient) -> None:
    """limit and offset page through sessions, newest first."""
    ids = [await create_session(client, f"s{i}") for i in range(5)]
    first = (await client.get(BASE, params={"limit": 2})).json()
    second = (await client.get(BASE, params={"limit": 2, "offset": 2})).json()
    assert [s["session_id"] for s in first["sessions"] + second["sessions"]] == ids[::-1][:4]
    assert first["total"] == 5
    assert len((await client.get(BASE, params={"status": "all"})).json()["sessions"]) == 5


async def test_idempotent_batch_is_applied_once(client: httpx.AsyncClient) -> None:
    """The same batch sent twice with one Idempotency-Key is stored once; both answers name the same range."""
    session_id = await create_session(client)
    body = [{"episode": 1}, {"episode": 2}]
    headers = {"Idempotency-Key": "batch-0001"}
    first = (await client.post(f"{BASE}/{session_id}/metrics", json=body, headers=headers)).json()
    again = (await client.post(f"{BASE}/{session_id}/metrics", json=body, headers=headers)).json()
    assert (first["first_seq"], first["last_seq"], first["duplicate"]) == (1, 2, False)
    assert (again["first_seq"], again["last_seq"], again["duplicate"]) == (1, 2, True)
    assert (await client.get(f"{BASE}/{session_id}/history")).json()["count"] == 2


async def test_idempotency_keys_are_scoped_per_message_type_and_bound_to_their_body(client: httpx.AsyncClient) -> None:
    """A key used for metrics does not swallow a decision sent with it; the same key with another body is a
    409 naming the key, and nothing of it is stored."""
    session_id = await create_session(client)
    headers = {"Idempotency-Key": "k-1"}
    metrics = (await client.post(f"{BASE}/{session_id}/metrics", json=[{"episode": 1}], headers=headers)).json()
    decision = await client.post(f"{BASE}/{session_id}/bot_decision", json={"q_values": [1.0]}, headers=headers)
    assert decision.status_code == 200, decision.text
    assert (metrics["first_seq"], decision.json()["first_seq"], decision.json()["duplicate"]) == (1, 2, False)

    other = await client.post(f"{BASE}/{session_id}/metrics", json=[{"episode": 2}], headers=headers)
    assert other.status_code == 409, other.text
    assert other.json()["idempotency_key"] == "k-1" and "k-1" in other.json()["detail"]
    assert await last_seq(client, session_id) == 2
    history = (await client.get(f"{BASE}/{session_id}/history")).json()
    assert [m["type"] for m in history["messages"]] == ["training_metrics", "bot_decision"]


async def test_non_finite_values_travel_as_strings(client: httpx.AsyncClient) -> None:
    """A diverging loss (NaN, ±Infinity) is stored and read back as the strings NaN, Infinity, -Infinity."""
    session_id = await create_session(client)
    raw = b'[{"episode": 1, "loss_value": NaN}, {"episode": 2, "loss_value": "Infinity", "current_reward": -Infinity}]'
    response = await client.post(f"{BASE}/{session_id}/metrics", content=raw, headers=JSON)
    assert response.status_code == 200, response.text
    messages = (await client.get(f"{BASE}/{session_id}/history")).json()["messages"]
    assert messages[0]["data"]["loss_value"] == "NaN"
    assert messages[1]["data"]["loss_value"] == "Infinity" and messages[1]["data"]["current_reward"] == "-Infinity"


async def test_history_filters_and_cursor(client: httpx.AsyncClient) -> None:
    """History filters by type, episode and time, and the cursor pages correctly while data keeps arriving."""
    session_id = await create_session(client)
    start = time.time()
    await client.post(f"{BASE}/{session_id}/metrics", json=[{"episode": i} for i in range(10)])
    await client.post(f"{BASE}/{session_id}/bot_decision", json={"episode": 3, "q_values": [1.0]})
    history = f"{BASE}/{session_id}/history"

    decisions = (await client.get(history, params={"type": "bot_decision"})).json()
    assert [m["seq"] for m in decisions["messages"]] == [11]
    episodes = (await client.get(history, params={"start_episode": 3, "end_episode": 4})).json()
    assert [(m["type"], m["data"]["episode"]) for m in episodes["messages"]] == [
        ("training_metrics", 3),
        ("training_metrics", 4),
        ("bot_decision", 3),
    ]
    assert (await client.get(history, params={"since": start - 60, "until": start + 60})).json()["count"] == 11
    assert (await client.get(history, params={"until": "2000-01-01T00:00:00Z"})).json()["count"] == 0
    # RFC 3339 (the schema's date-time) allows a lowercase t and z, as a point's own timestamp may have them
    assert (await client.get(history, params={"until": "2000-01-01t00:00:00z"})).json()["count"] == 0
    assert (await client.get(history, params={"since": "2000-01-01t00:00:00z"})).json()["count"] == 11

    page = (await client.get(history, params={"limit": 4})).json()
    seqs = [m["seq"] for m in page["messages"]]
    await client.post(f"{BASE}/{session_id}/metrics", json=[{"episode": 10}, {"episode": 11}])
    while page["next_cursor"] is not None:
        page = (await client.get(history, params={"limit": 4, "cursor": page["next_cursor"]})).json()
        seqs += [m["seq"] for m in page["messages"]]
    assert seqs == list(range(1, 14))


async def test_graph_keeps_newest_max_points(client: httpx.AsyncClient) -> None:
    """A graph keeps at most max_points per series, the newest ones."""
    session_id = await create_session(client)
    for start in (0, 3):
        points = [{"value": float(v)} for v in range(start, start + 3)]
        body = {"graph_id": "g", "max_points": 4, "data_points": {"reward": points}}
        assert (await client.post(f"{BASE}/{session_id}/graph_update", json=body)).status_code == 200
    graphs = (await client.get(f"{BASE}/{session_id}/graphs")).json()["graphs"]
    assert [p["value"] for p in graphs[0]["data_points"]["reward"]] == [2.0, 3.0, 4.0, 5.0]


async def test_health_and_status(client: httpx.AsyncClient) -> None:
    """/health answers when the database does; /status counts sessions and messages."""
    assert (await client.get("/health")).json() == {"status": "ok", "database": "ok", "broker": "ok", "loops": {}}
    session_id = await create_session(client)
    await client.post(f"{BASE}/{session_id}/metrics", json=[{"episode": 1}, {"episode": 2}])
    status = (await client.get("/status")).json()
    assert status["sessions"] == {"total": 1, "active": 1}
    assert status["messages_in"] == 2 and status["version"]
    assert status["broker"] == {"name": "memory", "problem": None, "messages_given_up": 0}


async def test_openapi_documents_bodies(client: httpx.AsyncClient) -> None:
    """/docs is served and the OpenAPI schema names the body models."""
    schema = (await client.get("/openapi.json")).json()
    assert {"TrainingMetricsData", "BotDecisionData", "PerformanceGraphData", "GraphPoint"} <= set(
        schema["components"]["schemas"]
    )
    assert (await client.get("/docs")).status_code == 200
    metrics = schema["paths"]["/api/training/sessions/{session_id}/metrics"]["post"]
    assert {"200", "404", "409", "413", "422", "503"} <= set(metrics["responses"])
    batch = metrics["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert batch["type"] == "array" and batch["minItems"] == 1
    assert {"201", "409", "413", "422", "503"} <= set(schema["paths"]["/api/training/sessions"]["post"]["responses"])
    assert "404" in schema["paths"]["/api/training/sessions/{session_id}/history"]["get"]["responses"]


@pytest.mark.parametrize(("path", "bundle"), [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
async def test_docs_load_nothing_from_another_site(client: httpx.AsyncClient, path: str, bundle: str) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) work offline: every script, style sheet, icon and font they name
    is served by this server, from the package; Swagger UI's redirect page for OAuth2 is there too."""
    page = await client.get(path)
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200 and asset.content, url
    assert bundle in (await client.get(next(u for u in urls if u.endswith(".js")))).text
    assert (await client.get("/docs/oauth2-redirect")).status_code == 200


async def test_a_refused_value_is_echoed_short(client: httpx.AsyncClient) -> None:
    """A 422 names the refused input, but never sends back more than 200 characters of it."""
    session_id = await create_session(client)
    response = await client.post(f"{BASE}/{session_id}/metrics", json={"algorithm": "a" * 100_000})
    assert response.status_code == 422 and len(response.content) < 2_000
    assert response.json()["detail"][0]["input"].endswith("...")


@pytest.mark.parametrize("method", ["GET", "PUT", "POST"])
async def test_an_unknown_long_session_id_is_echoed_short(client: httpx.AsyncClient, method: str) -> None:
    """A path's session id is not checked for length: a 404 about one of 3,000 characters names it in at most
    200 characters, in `detail` and `session_id` together, as every refusal does."""
    session_id = "s" * 3000
    path = {"GET": f"{BASE}/{session_id}", "PUT": f"{BASE}/{session_id}", "POST": f"{BASE}/{session_id}/metrics"}
    body = {"PUT": {"status": "running"}, "POST": {"episode": 1}}.get(method)
    response = await client.request(method, path[method], json=body)
    assert response.status_code == 404, response.text
    answer = response.json()
    assert answer["session_id"].startswith("sss") and answer["session_id"].endswith("...")
    assert len(answer["detail"]) + len(answer["session_id"]) <= 220 and "not found" in answer["detail"]
    short = await client.get(f"{BASE}/no-such-session")
    assert short.json() == {"detail": "session 'no-such-session' not found", "session_id": "no-such-session"}


@pytest.mark.parametrize("path", ["/api/training/jobs/{}", "/api/training/jobs/{}/logs", "/static/{}"])
async def test_an_unknown_long_path_parameter_is_echoed_short(client: httpx.AsyncClient, path: str) -> None:
    """Review 1 finding 10: a job id of 7,000 characters came back whole in its 404. Every path parameter a
    refusal names is cut to 200 characters, as a session id is."""
    response = await client.get(path.format("j" * 7000))
    assert response.status_code == 404, response.text
    assert "jjj..." in response.json()["detail"] and len(response.content) < 300, response.text


async def test_an_unknown_long_session_id_is_echoed_short_to_a_spectator(live: LiveServer, spectators: Any) -> None:
    """The WebSocket's 4404 names the session id in its error message, cut to 200 characters too."""
    ws = await spectators(live.ws_url("s" * 3000))
    error = await recv_json(ws)
    assert error["data"]["code"] == "session_not_found" and "sss..." in error["data"]["message"], error
    assert len(orjson.dumps(error)) < 500 and await close_code(ws) == 4404


async def test_a_body_over_the_limit_is_413_and_stores_nothing(server_factory: Any, settings: Any) -> None:
    """A body over max_body_bytes gets 413 naming the limit, whether its length is declared or streamed."""
    live = await server_factory(settings.model_copy(update={"max_body_bytes": 10_000}))
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        session_id = await create_session(http)
        body = orjson.dumps([{"episode": i, "algorithm": "x" * 50} for i in range(500)])
        declared = await http.post(f"{BASE}/{session_id}/metrics", content=body, headers=JSON)

        async def chunks() -> Any:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        streamed = await http.post(f"{BASE}/{session_id}/metrics", content=chunks(), headers=JSON)
        for response in (declared, streamed):
            assert response.status_code == 413, response.text
            assert response.json()["max_body_bytes"] == 10_000
        assert await last_seq(http, session_id) == 0
        assert (await http.post(BASE, content=b'{"name": "' + b"n" * 20_000 + b'"}', headers=JSON)).status_code == 413


BAD_INGEST: list[tuple[str, Any, str]] = [
    ("metrics", {"win_rate": 101}, "win_rate"),
    ("metrics", {"epsilon": -0.1}, "epsilon"),
    ("metrics", {"episode": "ten"}, "episode"),
    ("metrics", {"curent_reward": 1}, "curent_reward"),
    ("metrics", {"custom": {"current_reward": 1}}, "custom"),
    # An export's row has a column for seq and for each field of a point: a custom metric of that name would
    # be written over it (a custom "seq" replaced the real one in JSON, a custom "episode" was hidden in CSV).
    ("metrics", {"episode": 1, "custom": {"seq": 555}}, "custom"),
    ("metrics", {"custom": {"episode": 42}}, "custom"),
    ("metrics", {"custom": {"timestamp": 1.0}}, "custom"),
    ("metrics", {"custom": {"step": 1.0}}, "custom"),
    ("metrics", {"custom": {"algorithm": 1.0}}, "custom"),
    ("metrics", [{"episode": 1}, {"episode": 2, "win_rate": "NaN"}], "1.win_rate"),
    ("metrics", [], "body"),
    ("metrics", "not an object", "body"),
    ("bot_decision", {"action_probabilities": {"a": 0.5, "b": 0.2}}, "action_probabilities"),
    ("bot_decision", {"action_probabilities": {"a": 1.5, "b": -0.5}}, "action_probabilities.a"),
    ("bot_decision", {"confidence_score": 2}, "confidence_score"),
    ("graph_update", {"data_points": {}}, "graph_id"),
    ("graph_update", {"graph_id": "g", "metrics": ["a"], "data_points": {"b": [{"value": 1}]}}, "data_points"),
    ("graph_update", {"graph_id": "g", "max_points": 0}, "max_points"),
    # No lax coercion: a boolean is not a number, a string is not a float (but "NaN" is), 1.0 is not an integer.
    ("metrics", {"current_reward": False}, "current_reward"),
    ("metrics", {"epsilon": True}, "epsilon"),
    ("metrics", {"current_reward": "1.5"}, "current_reward"),
    ("metrics", {"episode": 1.5}, "episode"),
    ("metrics", {"custom": {"kl": True}}, "custom.kl"),
    ("bot_decision", {"q_values": [1.0, False]}, "q_values.1"),
    ("graph_update", {"graph_id": "g", "data_points": {"r": [{"value": True}]}}, "value"),
    # What one message may carry (every spectator receives it).
    ("metrics", {"custom": {f"m{i}": 1.0 for i in range(257)}}, "custom"),
    ("bot_decision", {"selected_action": "a" * 257}, "selected_action"),
    ("bot_decision", {"q_values": [0.0] * 4097}, "q_values"),
    ("graph_update", {"graph_id": "g", "data_points": {f"s{i}": [] for i in range(65)}}, "data_points"),
    # Values past what the store holds: refused here, never by the database in a shared commit.
    ("metrics", {"episode": 2**63}, "episode"),
    ("metrics", {"episode": 2**70}, "episode"),
    ("metrics", [{"episode": 1}, {"total_episodes": 2**64}], "1.total_episodes"),
    ("bot_decision", {"selected_action": 2**64}, "selected_action"),
    # PostgreSQL's text holds no NUL: refused for every backend alike, the same answer on SQLite.
    ("graph_update", {"graph_id": "g\x00", "data_points": {}}, "graph_id"),
    ("metrics", {"algorithm": "dqn\x00"}, "algorithm"),
    ("bot_decision", {"selected_action": "left\x00"}, "selected_action"),
    ("bot_decision", {"step": 2**63}, "step"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_INGEST)
async def test_bad_ingest_is_rejected_and_stores_nothing(
    client: httpx.AsyncClient, path: str, body: Any, field: str
) -> None:
    """An invalid push gets 422 naming the field, and nothing of it is stored (a list is all-or-nothing)."""
    session_id = await create_session(client)
    response = await client.post(f"{BASE}/{session_id}/{path}", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]
    assert await last_seq(client, session_id) == 0


def nested(depth: int) -> bytes:
    return b'{"training_id": "deep", "metadata": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"training_id": "big", "total_episodes": 9223372036854775808}', "total_episodes"),
        (b'{"training_id": "big", "metadata": {"seed": 1' + b"0" * 400 + b"}}", "metadata"),  # past a float
        (b'{"training_id": "lone", "name": "\\ud800"}', "body"),  # the JSON parser refuses lone surrogates
        (b'{"training_id": "lone", "name": "\\ud800", "metadata": {"x": NaN}}', "body"),
        (b'{"training_id": "lone", "metadata": {"\\ud800": 1}}', "body"),
        (nested(100), "metadata"),
        (b'{"training_id": "fat", "metadata": {"notes": "' + b"n" * 70_000 + b'"}}', "metadata"),
        (nested(5000), "body"),
        (b'{"training_id": "nul", "name": "a\\u0000b"}', "name"),  # PostgreSQL's text holds no NUL
        (b'{"training_id": "nul", "algorithm": "\\u0000"}', "algorithm"),
    ],
    ids=[
        "int",
        "metadata-int",
        "surrogate",
        "surrogate-nan",
        "surrogate-key",
        "depth-100",
        "size-70k",
        "depth-5000",
        "nul-name",
        "nul-algorithm",
    ],
)
async def test_session_values_the_store_cannot_hold_are_422(client: httpx.AsyncClient, body: bytes, field: str) -> None:
    """Integers past what the store holds, lone surrogates and deep nesting get a 422 naming the field; no
    session is made."""
    response = await client.post(BASE, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]
    assert (await client.get(BASE, params={"status": "all"})).json()["total"] == 0


async def test_metadata_integers_past_64_bits_are_kept_as_floats(client: httpx.AsyncClient) -> None:
    """JSON has one kind of number: what a JavaScript client would read is stored, not a 422 (JSON Schema agrees)."""
    body = b'{"training_id": "big", "metadata": {"seed": 18446744073709551616, "n": [-9223372036854775809, 7]}}'
    response = await client.post(BASE, content=body, headers=JSON)
    assert response.status_code == 201, response.text
    stored = (await client.get(f"{BASE}/big")).json()["metadata"]
    assert stored == {"seed": 1.8446744073709552e19, "n": [-9.223372036854776e18, 7]}
    assert isinstance(stored["n"][1], int)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("post", "/x/metrics", {"content": b"{oops", "headers": JSON}, 422, "JSON"),
        (
            "post",
            "/x/metrics",
            {"json": {"episode": 1}, "headers": {"Idempotency-Key": "a" * 200}},
            422,
            "Idempotency-Key",
        ),
        (
            "post",
            "/x/metrics",
            {"json": {"episode": 1}, "headers": [("Idempotency-Key", "k-1"), ("Idempotency-Key", "k-2")]},
            422,
            "Idempotency-Key",
        ),
        ("get", "", {"params": {"status": "sleeping"}}, 422, "status"),
        ("get", "", {"params": {"limit": 0}}, 422, "limit"),
        ("get", "/x/history", {"params": {"type": "nonsense"}}, 422, "type"),
        ("get", "/x/history", {"params": {"cursor": "abc"}}, 422, "cursor"),
        ("get", "/x/history", {"params": {"cursor": "²"}}, 422, "cursor"),  # str.isdigit() says yes
        ("get", "/x/history", {"params": {"cursor": str(2**63)}}, 422, "cursor"),
        ("get", "/x/history", {"params": {"start_episode": str(2**63)}}, 422, "start_episode"),
        ("get", "/x/history", {"params": {"end_episode": str(2**70)}}, 422, "end_episode"),
        ("get", "/x/history", {"params": {"since": "nan"}}, 422, "since"),
        ("get", "/x/series", {"params": {"after_seq": str(2**63)}}, 422, "after_seq"),
        ("get", "", {"params": {"offset": str(2**63)}}, 422, "offset"),
        ("get", "/x/series", {"params": {"metric": [f"m{i}" for i in range(17)]}}, 422, "metric"),
        ("get", "/x/series", {"params": {"metric": "loss_value", "points": 10_001}}, 422, "points"),
        ("get", "/x/history", {"params": {"since": "yesterday"}}, 422, "since"),
        ("get", "/x/history", {"params": {"limit": 100001}}, 422, "limit"),
        ("put", "/x", {"json": {"status": "sleeping"}}, 422, "status"),
        ("put", "/x", {"json": {}}, 422, "nothing to update"),
    ],
)
async def test_bad_requests_name_the_problem(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any], status: int, needle: str
) -> None:
    """Bad bodies, headers and query parameters get a 4xx whose body names the field; nothing changes."""
    await create_session(client, "x")
    response = await getattr(client, method)(BASE + path, **kwargs)
    assert response.status_code == status, response.text
    assert needle in response.text
    after = (await client.get(f"{BASE}/x")).json()
    assert after["last_seq"] == 0 and after["status"] == "created"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/missing", None),
        ("put", "/missing", {"status": "running"}),
        ("delete", "/missing", None),
        ("post", "/missing/metrics", {"episode": 1}),
        ("post", "/missing/bot_decision", {"q_values": [1.0]}),
        ("post", "/missing/graph_update", {"graph_id": "g"}),
        ("get", "/missing/history", None),
        ("get", "/missing/graphs", None),
    ],
)
async def test_unknown_session_is_404(client: httpx.AsyncClient, method: str, path: str, body: Any) -> None:
    """Every endpoint answers 404 with a JSON body naming the session for an unknown id."""
    kwargs = {"json": body} if body is not None else {}
    response = await client.request(method.upper(), BASE + path, **kwargs)
    assert response.status_code == 404
    assert response.json()["session_id"] == "missing"


async def test_duplicate_training_id_is_409(client: httpx.AsyncClient) -> None:
    """Creating a session with a taken training_id is refused and the first session is untouched."""
    await create_session(client, "taken", algorithm="DQN")
    response = await client.post(BASE, json={"training_id": "taken", "algorithm": "PPO"})
    assert response.status_code == 409 and "taken" in response.json()["detail"]
    assert (await client.get(f"{BASE}/taken")).json()["algorithm"] == "DQN"


async def test_oversized_batch_is_refused(client: httpx.AsyncClient, live: Any) -> None:
    """A batch larger than max_batch_size is refused whole with a hint to split it."""
    session_id = await create_session(client)
    too_many = [{"episode": 1}] * 10001
    response = await client.post(f"{BASE}/{session_id}/metrics", json=too_many)
    assert response.status_code == 422 and "split the batch" in response.text
    assert await last_seq(client, session_id) == 0


async def test_a_body_of_a_million_tiny_items_is_counted_and_refused_before_validation(
    client: httpx.AsyncClient,
) -> None:
    """A million `{}` fit in 3 MB: refused as too many items (counted on the bytes before validation), with a
    short answer; a list of many invalid points gets its errors capped, not thousands of them."""
    session_id = await create_session(client)
    response = await client.post(
        f"{BASE}/{session_id}/metrics", content=b"[" + b",".join([b"{}"] * 1_000_000) + b"]", headers=JSON
    )
    assert response.status_code == 422 and len(response.content) < 1000
    assert response.json()["detail"][0]["type"] == "too_long" and "more than 10000 items" in response.text
    invalid = [{"episode": "not a number"}] * 5000
    response = await client.post(f"{BASE}/{session_id}/metrics", json=invalid)
    assert response.status_code == 422 and len(response.json()["detail"]) <= 100
    assert "5000 errors" in response.json()["message"]
    assert await last_seq(client, session_id) == 0


def test_count_items_reads_only_the_structure() -> None:
    """Commas and brackets inside strings, escapes and nesting do not change the count."""
    for value in ([{"a": 'x,y]\\"}{'}, {"b": [1, 2, {"c": [3]}]}, 5], [], [1], [{}] * 7, ["a,b", {"k\\": '"'}]):
        assert count_items(orjson.dumps(value)) == len(value)
    assert count_items(b" [ ] ") == 0 and count_items(b"[ 1 , [2, 3] ]") == 2


async def test_series_is_downsampled_per_metric(client: httpx.AsyncClient) -> None:
    """/series returns columnar points per metric, at most `points`, spike kept, NaN counted, range filters."""
    session_id = await create_session(client)
    body = [
        {"episode": i, "current_reward": 100.0 if i == 1234 else float(i % 7), "loss_value": 1.0} for i in range(3000)
    ]
    body[10]["loss_value"] = float("nan")
    response = await client.post(f"{BASE}/{session_id}/metrics", content=__import__("json").dumps(body), headers=JSON)
    assert response.status_code == 200
    series = (
        await client.get(
            f"{BASE}/{session_id}/series", params={"metric": ["current_reward", "loss_value"], "points": 100}
        )
    ).json()
    reward = series["series"]["current_reward"]
    assert reward["total"] == 3000 and len(reward["value"]) <= 100 and 100.0 in reward["value"]
    assert reward["episode"][0] == 0 and reward["episode"][-1] == 2999
    assert series["series"]["loss_value"]["nan_count"] == 1
    assert {"current_reward", "loss_value", "episode_length"} >= set(series["available"])
    ranged = (
        await client.get(
            f"{BASE}/{session_id}/series", params={"metric": "current_reward", "start_episode": 10, "end_episode": 19}
        )
    ).json()
    assert ranged["series"]["current_reward"]["episode"] == list(range(10, 20))
    assert (await client.get(f"{BASE}/{session_id}/series", params={"metric": "x", "points": 1})).status_code == 422


async def test_series_points_carry_the_engines_own_step(client: httpx.AsyncClient) -> None:
    """A point's `step` (the engine's, as wandb.log's) comes back with it, from the rollups of a long series
    and from a range read alike; a point without one has null; a bad step is refused, nothing stored."""
    session_id = await create_session(client)
    body = [{"episode": i, "step": 25 * i, "current_reward": float(i % 5)} for i in range(3000)]
    body[7].pop("step")
    assert (await client.post(f"{BASE}/{session_id}/metrics", json=body)).status_code == 200
    for params in ({"points": 20}, {"start_episode": 5, "end_episode": 9}):
        series = (await client.get(f"{BASE}/{session_id}/series", params={"metric": "current_reward", **params})).json()
        reward = series["series"]["current_reward"]
        assert len(reward["step"]) == len(reward["episode"]) > 2, reward
        expected = [None if e == 7 else 25 * e for e in reward["episode"]]
        assert reward["step"] == expected, params
    assert "step" not in series["available"]  # the x axis, not a metric
    for bad in (-1, 1.5, "3", 2**63):
        response = await client.post(f"{BASE}/{session_id}/metrics", json=[{"episode": 1, "step": bad}])
        assert response.status_code == 422 and "step" in response.text, (bad, response.text)
    assert (await client.get(f"{BASE}/{session_id}")).json()["last_seq"] == 3000


async def test_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """FastAPI makes a route per method, and Starlette's `Allow` named only the first one's."""
    for path, allowed in [
        (BASE, "GET, POST"),
        (f"{BASE}/x", "DELETE, GET, PUT"),
        ("/api/training/daemon/config", "GET, PUT"),
    ]:
        response = await client.request("PATCH", path)
        assert (response.status_code, response.headers["allow"]) == (405, allowed), path


async def test_a_whole_float_is_an_integer(client: httpx.AsyncClient) -> None:
    """JSON Schema calls 3.0 an integer: it is taken as 3; 3.5, `true`, "3" and floats past 2**53 are not."""
    session_id = await create_session(client)
    ok = await client.post(f"{BASE}/{session_id}/metrics", json={"episode": 3.0, "total_episodes": 10.0})
    assert ok.status_code == 200, ok.text
    page = (await client.get(f"{BASE}/{session_id}/history")).json()
    assert page["messages"][0]["data"]["episode"] == 3
    for value in [3.5, True, "3", 2.0**60, -1.0]:
        refused = await client.post(f"{BASE}/{session_id}/metrics", json={"episode": value})
        assert refused.status_code == 422 and "episode" in refused.json()["message"], value
    assert await last_seq(client, session_id) == 1


@pytest.mark.parametrize("timestamp", [2e10, -2e10, True, "yesterday"])
async def test_a_timestamp_is_rfc3339_or_epoch_seconds_in_range(client: httpx.AsyncClient, timestamp: Any) -> None:
    """A number past 1e10 would be read as milliseconds by pydantic: refused, as the schema says."""
    session_id = await create_session(client)
    response = await client.post(f"{BASE}/{session_id}/metrics", json={"episode": 1, "timestamp": timestamp})
    assert response.status_code == 422 and "timestamp" in response.json()["message"], response.text


async def test_word_lists_take_exactly_what_their_pattern_says(client: httpx.AsyncClient) -> None:
    """`status` and `type` are documented with a pattern (so a client knows the words) and held to it."""
    session_id = await create_session(client)
    document = (await client.get("/openapi.json")).json()
    listing = next(p for p in document["paths"][BASE]["get"]["parameters"] if p["name"] == "status")
    assert "running" in listing["schema"]["pattern"]
    assert (await client.get(BASE, params={"status": "running, created"})).json()["total"] == 1
    for bad in ["running,,created", "running,", "", "sleeping"]:
        response = await client.get(BASE, params={"status": bad})
        assert response.status_code == 422 and "status" in response.json()["message"], bad
    history = f"{BASE}/{session_id}/history"
    assert (await client.get(history, params={"type": "training_metrics,bot_decision"})).status_code == 200
    assert (await client.get(history, params={"type": ""})).status_code == 422


async def test_tags_are_set_listed_filtered_and_replaced(client: httpx.AsyncClient) -> None:
    """Tags as W&B's: given at creation, replaced by PUT, listed, and the list filtered by one or several
    (exact tags: `_` and `%` are no wildcards, `a` is not `ab`); a bad tag is refused and changes nothing."""
    a = await create_session(client, "tagged-a", tags=["baseline", "lr_1e-3", "baseline"])  # each once
    b = await create_session(client, "tagged-b", tags=["baseline", "ab"])
    await create_session(client, "tagged-c", tags=["lrx1e-3", "a"])

    async def listed(*tags: str) -> list[str]:
        answer = await client.get(BASE, params={"status": "all", "tag": list(tags)})
        assert answer.status_code == 200, answer.text
        return sorted(s["session_id"] for s in answer.json()["sessions"])

    assert await listed("baseline") == [a, b]
    assert await listed("lr_1e-3") == [a] and await listed("a") == ["tagged-c"]
    assert await listed("baseline", "ab") == [b] and await listed("nothing") == []
    assert (await client.get(f"{BASE}/{a}")).json()["tags"] == ["baseline", "lr_1e-3"]
    replaced = await client.put(f"{BASE}/{a}", json={"tags": ["best", "best", "seed 3"]})
    assert replaced.status_code == 200 and replaced.json()["tags"] == ["best", "seed 3"]
    assert await listed("baseline") == [b] and await listed("seed 3") == [a]
    for bad in (['say "hi"'], ["x" * 65], [f"t{i}" for i in range(21)], [""], "baseline"):
        for method, path, body in (("put", f"{BASE}/{a}", {"tags": bad}), ("post", BASE, {"name": "x", "tags": bad})):
            answer = await client.request(method, path, json=body)
            assert answer.status_code == 422 and "tags" in answer.text, (bad, answer.text)
    assert (await client.get(f"{BASE}/{a}")).json()["tags"] == ["best", "seed 3"]
    assert (await client.get(BASE, params={"tag": 'a"b'})).status_code == 422
