"""A page of another origin, in a real browser, tries what a visitor's browser lets any page do to a server
on the visitor's machine (issue #24): fetch with `no-cors` and sendBeacon with untyped bodies, to create
sessions, push metrics and start a job. Nothing is created (bot/server/edge/browsers.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson

from bot.config import Settings
from tests.conftest import TIMEOUT, LiveServer, create_session
from tests.web.conftest import BROWSER_TESTS

pytestmark = BROWSER_TESTS

BASE = "/api/training/sessions"

# What the attacker's page sends: (how, path, body). Every body is an untyped Blob (no Content-Type), which
# neither fetch no-cors nor sendBeacon needs a preflight for, or text a form could send.
ATTEMPTS = [
    ("fetch", BASE, {"training_id": "forged-by-fetch"}),
    ("beacon", BASE, {"training_id": "forged-by-beacon"}),
    ("fetch", f"{BASE}/victim/metrics", [{"episode": 1, "current_reward": 1e9}]),
    ("beacon", f"{BASE}/victim/metrics", [{"episode": 2, "current_reward": 1e9}]),
    ("beacon", "/api/training/start", {"scenario_name": "cartpole", "num_episodes": 10_000_000}),
    ("fetch", "/api/training/daemon/run", {}),
]  # no-cors allows GET, HEAD and POST only: a PUT or DELETE from another origin needs a preflight

PAGE = """<!doctype html><title>cute cats</title><script>
const target = %(target)s, attempts = %(attempts)s;
window.done = (async () => {
  for (const [how, path, body] of attempts) {
    const blob = new Blob([JSON.stringify(body)]);  // no type: no Content-Type header
    if (how === "beacon") navigator.sendBeacon(target + path, blob);
    else await fetch(target + path, {method: "POST", mode: "no-cors", body: blob}).catch(() => null);
  }
  return true;
})();
</script>"""


async def serve_page(html: str) -> asyncio.Server:
    """The attacker's site: one page, on another port of the same machine (another origin)."""
    body = html.encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head % len(body) + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def test_a_page_of_another_origin_creates_nothing(
    server_factory: Any, settings: Settings, browser: Any, tmp_path: Path
) -> None:
    """On the old server this made three sessions, two points and a 10,000,000-episode job."""
    live: LiveServer = await server_factory(settings.model_copy(update={"models_dir": tmp_path / "models"}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        await create_session(client, "victim")
        await attack(live, browser)
        sessions = (await client.get(BASE)).json()["sessions"]
        assert [s["session_id"] for s in sessions] == ["victim"]
        victim = (await client.get(f"{BASE}/victim")).json()
        assert (victim["last_seq"], victim["status"]) == (0, "created")
        assert (await client.get("/api/training/jobs")).json()["jobs"] == []


async def attack(live: LiveServer, browser: Any) -> None:
    """The attacker's page, opened in the browser; returns once the server answered each of its requests."""
    page_html = PAGE % {"target": orjson.dumps(live.url).decode(), "attempts": orjson.dumps(ATTEMPTS).decode()}
    site = await serve_page(page_html)
    port = site.sockets[0].getsockname()[1]
    page = await browser.new_page()
    answered: list[str] = []
    page.on("response", lambda response: answered.append(response.url) if live.url in response.url else None)
    try:
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.wait_for_function("() => window.done")
        async with asyncio.timeout(TIMEOUT):  # the beacons go out on their own: wait until each was answered
            while len(answered) < len(ATTEMPTS):
                await asyncio.sleep(0.05)
    finally:
        await page.close()
        site.close()
