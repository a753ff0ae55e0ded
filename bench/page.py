"""The session page in Debian's Chromium (headless, Playwright), against a real `bot serve`:

1. first chart drawn, in ms after navigation, for sessions of 1,000 to 1,000,000 points (target 500 ms);
2. 1,000 points/s arriving live with smoothing on: the longest gap between frames, how many frames took
   over 50 ms (target: none), the JS heap and the points the charts keep, sampled through the run
   (target: bounded).

    python bench/page.py [--live-seconds 60] [--sizes 1000,10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bench.history import fill
from tests.web.conftest import CHROMIUM, FLAGS as BROWSER_FLAGS

# The browser tests' Chromium and flags, and precise heap figures.
FLAGS = [*BROWSER_FLAGS, "--enable-precise-memory-info"]
# Watches every frame from the first script on: the longest gap between two frames and how many passed 50 ms.
FRAME_WATCH = """
window.frames_ = { max: 0, over50: 0, count: 0, last: null, watch: false };
(function tick(now) {
  const f = window.frames_;
  if (f.watch && f.last !== null) {
    const gap = now - f.last;
    f.max = Math.max(f.max, gap); if (gap > 50) f.over50++; f.count++;
  }
  f.last = now;
  requestAnimationFrame(tick);
})(performance.now());
"""


async def first_chart(browser: Any, url: str, runs: int = 3) -> list[float]:
    times = []
    for _ in range(runs):
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(f"{url}/sessions/big")
        await page.wait_for_function("() => window.TMS.firstDrawAt !== undefined", timeout=30_000)
        times.append(await page.evaluate("() => window.TMS.firstDrawAt"))
        await page.close()
    return times


async def sizes(browser: Any, counts: list[int]) -> None:
    print("first chart drawn after navigation (3 loads each, ms):")
    for count in counts:
        with tempfile.TemporaryDirectory() as directory:
            database = Path(directory) / "page.db"
            fill(database, count)
            with server_process(database=database) as server:
                times = await first_chart(browser, server.url)
        print(f"  {count:>9,} points: median {statistics.median(times):6.0f}  max {max(times):6.0f}")


def pusher(url: str, session_id: str, seconds: float, stop: threading.Event) -> int:
    """1,000 points a second, as 50-point batches every 50 ms, each with every chart's metrics."""
    sent, start = 0, time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set() and time.monotonic() - start < seconds:
            batch = [
                {"episode": sent + i, "current_reward": (sent + i) % 97 / 9.7, "loss_value": 1 / (1 + sent + i),
                 "epsilon": 0.1, "win_rate": 50.0}
                for i in range(50)
            ]  # fmt: skip
            http.post(f"/api/training/sessions/{session_id}/metrics", json=batch).raise_for_status()
            sent += 50
            time.sleep(max(0.0, start + sent / 1000 - time.monotonic()))
    return sent


async def live(browser: Any, seconds: float) -> None:
    with server_process() as server:
        httpx.post(f"{server.url}/api/training/sessions", json={"training_id": "live"}).raise_for_status()
        httpx.post(f"{server.url}/api/training/sessions/live/metrics", json={"episode": 0, "current_reward": 0.0})
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.add_init_script(FRAME_WATCH)
        await page.goto(f"{server.url}/sessions/live?smoothing=0.6")
        await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() > 0")
        await page.evaluate("() => { window.frames_.watch = true; }")
        stop = threading.Event()
        task = asyncio.create_task(asyncio.to_thread(pusher, server.url, "live", seconds, stop))
        samples = []
        every = max(5.0, seconds / 10)
        start = time.monotonic()
        while not task.done():
            await asyncio.sleep(min(every, max(0.1, seconds - (time.monotonic() - start))))
            samples.append(
                await page.evaluate(
                    """() => [performance.memory.usedJSHeapSize / 1048576,
                    Math.max(...[...window.sessionPage.charts.values()].map(e => e.chart.points()))]"""
                )
            )
            heap, kept = samples[-1]
            print(f"  t={time.monotonic() - start:5.0f} s  JS heap {heap:6.1f} MB  points kept per series {kept:6,}")
        sent = await task
        frames = await page.evaluate("() => window.frames_")
        print(
            f"live, {sent:,} points in {seconds:.0f} s (1,000/s), smoothing 0.6: {frames['count']:,} frames, "
            f"longest {frames['max']:.0f} ms, {frames['over50']} over 50 ms; JS heap "
            f"{min(s[0] for s in samples):.1f}-{max(s[0] for s in samples):.1f} MB"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--live-seconds", type=float, default=60)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    args = parser.parse_args()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        if args.sizes:
            await sizes(browser, [int(n) for n in args.sizes.split(",")])
        if args.live_seconds > 0:
            await live(browser, args.live_seconds)
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
