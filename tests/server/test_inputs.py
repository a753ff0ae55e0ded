"""Property tests: random strings in every query and path parameter, random JSON in every body. Whatever
arrives, the answer is a clear 4xx (or a success), never a 500, and the WebSocket closes with 4400 and an
`error`, never without a close frame.

One real server for the module (uvicorn on a thread of its own), real httpx and websockets clients.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bot.config import Settings
from tests.conftest import TIMEOUT, LiveServer, start_server

BASE = "/api/training/sessions"
# Any text, lone surrogates included (they reach the server percent-encoded or as JSON escapes).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["²", "１２", "0x10", "1e400", "-0", "+5", " 7 ", "1_000", "", "nan", "true"]),
)
PARAM_VALUES = st.one_of(ANY_TEXT, NUMBERS)
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        ANY_TEXT,
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "episode",
        "current_reward",
        "epsilon",
        "win_rate",
        "custom",
        "timestamp",
        "algorithm",
        "q_values",
        "action_probabilities",
        "selected_action",
        "graph_id",
        "data_points",
        "metrics",
        "max_points",
        "name",
        "training_id",
        "metadata",
        "total_episodes",
        "room",
        "status",
        "message",
        "step",
        "state_values",
    ]
)
BODIES = st.one_of(JSON, st.dictionaries(FIELDS, JSON, max_size=5), st.lists(st.dictionaries(FIELDS, JSON, max_size=4)))
FUZZ = hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
pytestmark = pytest.mark.slow  # hundreds of requests: CI runs them, `-m "not slow"` skips them


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on a thread with its own event loop, for the whole module (hypothesis calls the test
    body many times; a server per call would be most of the time)."""
    path: Path = tmp_path_factory.mktemp("inputs") / "metrics.db"
    settings = Settings(database_url=f"sqlite:///{path}", ingest_processes=0, sqlite_synchronous="NORMAL")
    loop = asyncio.new_event_loop()
    started: list[LiveServer] = []
    ready = threading.Event()

    def run() -> None:
        async def serve() -> None:
            live = await start_server(settings)
            started.append(live)
            ready.set()
            await live.task

        loop.run_until_complete(serve())

    thread = threading.Thread(target=run, name="inputs-server", daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT)
    url = started[0].url
    assert httpx.post(url + BASE, json={"training_id": "fuzz"}).status_code == 201
    yield url
    started[0].server.should_exit = True
    thread.join(TIMEOUT)
    loop.close()


@pytest.fixture(scope="module")
def http(live_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, timeout=TIMEOUT) as client:
        yield client


def clear_answer(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code == 422:
        body = response.json()
        assert body["detail"] and "message" in body, body


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("", ["status", "limit", "offset"]),
        ("/fuzz/history", ["type", "start_episode", "end_episode", "since", "until", "limit", "cursor"]),
        ("/fuzz/series", ["metric", "points", "start_episode", "end_episode", "since", "until", "after_seq"]),
    ],
)
@given(data=st.data())
@FUZZ
def test_random_query_parameters_get_a_clear_answer(http: httpx.Client, path: str, names: list[str], data: Any) -> None:
    """Random values in every query parameter: 200 or a 422 naming the problem, never a 500."""
    params = data.draw(st.dictionaries(st.sampled_from(names), PARAM_VALUES, max_size=3))
    clear_answer(http.get(BASE + path, params={k: v.encode("utf-8", "surrogatepass") for k, v in params.items()}))


@given(
    session_id=ANY_TEXT.filter(lambda s: s not in ("", ".", "..")),
    suffix=st.sampled_from(["", "/history", "/series", "/graphs"]),
)
@FUZZ
def test_random_path_parameters_get_a_clear_answer(http: httpx.Client, session_id: str, suffix: str) -> None:
    """Any session id in the path: found, 404 or 422, never a 500."""
    path = quote(session_id.encode("utf-8", "surrogatepass"), safe="")
    clear_answer(http.get(f"{BASE}/{path}{suffix}"))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/fuzz/metrics"),
        ("post", "/fuzz/bot_decision"),
        ("post", "/fuzz/graph_update"),
        ("post", ""),
        ("put", "/fuzz"),
    ],
)
@given(body=BODIES)
@FUZZ
def test_random_json_bodies_get_a_clear_answer(http: httpx.Client, method: str, path: str, body: Any) -> None:
    """Random JSON (huge integers, NaN, lone surrogates, nesting) in every body: a success or a 4xx."""
    raw = json.dumps(body, ensure_ascii=True).encode()  # Python's json writes NaN and \\ud800 as they are
    clear_answer(http.request(method, BASE + path, content=raw, headers={"Content-Type": "application/json"}))


@given(params=st.dictionaries(st.sampled_from(["since", "epoch", "types", "user_name", "password"]), PARAM_VALUES))
@FUZZ
def test_random_spectator_query_gets_a_welcome_or_4400(live_url: str, params: dict[str, str]) -> None:
    """Random query values on the WebSocket: a welcome, or an `error` naming the problem and close 4400."""
    query = "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in params.items())
    with connect(f"ws{live_url[4:]}/ws/fuzz?{query}", open_timeout=TIMEOUT, compression=None) as ws:
        first = orjson.loads(ws.recv(TIMEOUT))
        if first["type"] == "error":
            assert first["data"]["code"] == "invalid_parameter" and first["data"]["message"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        else:
            assert first["type"] == "connection_status"
