"""The page for daily ML work (#27), in a real browser: numbers that read right, a `bot train --server` run
that tells itself apart, the small things a TensorBoard or W&B user notices (icon, 0-based runs, picked
metrics in the URL, one legend entry per metric, names in compare, a phone's width)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TIMEOUT, LiveServer, create_session
from tests.web.conftest import BROWSER_TESTS, snap

pytestmark = BROWSER_TESTS

SUMMARY_ROWS = "rows => Object.fromEntries(rows.map(r => [r.dataset.metric, [...r.cells].map(c => c.textContent)]))"


async def test_the_run_panel_reads_tens_of_thousands_whole(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """30,000 reads "30,000", not "3" (trailing zeros were stripped from the integer part)."""
    session_id = await create_session(client, "big-numbers")
    point = {"episode": 2, "current_reward": 30000, "custom": {"timesteps": 20000, "tiny": 0.000012345}}
    assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=[point])).status_code == 200
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_selector("#summary tr[data-metric=timesteps]")
    rows = await page.eval_on_selector_all("#summary tr", SUMMARY_ROWS)
    assert rows["current_reward"][1:4] == ["30,000", "30,000", "30,000"], rows
    assert rows["timesteps"][1:4] == ["20,000", "20,000", "20,000"], rows
    assert rows["tiny"][1] == "1.2345e-5", rows


async def test_a_bot_train_run_shows_its_configuration_progress_and_name_and_stops(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    """A live `bot train --server` run: its whole configuration in the run panel, a progress bar out of its
    total (which is not charted as a metric), a name with its seed; Ctrl-C shows it `stopped`."""
    out = tmp_path / "out"
    args = ["train", "--env", "MockCache-v0", "-e", "100000", "--seed", "4", "-o", str(out), "--server", live.url]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=tmp_path, env={**os.environ, "TMS_SPOOL_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        async with asyncio.timeout(120):
            while "live at" not in (line := (await process.stderr.readline()).decode()):
                assert line, "bot train ended before it said where to watch"
        session_id = line.split("'")[1]
        page = await browser.new_page(viewport={"width": 1200, "height": 1000})
        await page.goto(f"{live.url}/sessions/{session_id}")
        await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() >= 30")
        await page.wait_for_selector("#summary tr[data-metric=current_reward]")
        config = dict(
            await page.eval_on_selector_all(
                "#config tr", "rs => rs.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
            )
        )
        assert config["max_episodes"] == "100000" and config["seed"] == "4" and config["env_id"] == "MockCache-v0"
        assert "learning_rate" in config and "hidden_sizes" in config, config  # the defaults too
        assert await page.is_visible("#progress") and (await page.text_content("#episode") or "").endswith("/ 100000")
        assert await page.query_selector("#picker input[value=total_episodes]") is None
        assert await page.query_selector("#summary tr[data-metric=total_episodes]") is None
        assert (await page.text_content("#title") or "").startswith("dqn MockCache-v0 seed 4 · ")
        await snap(page, tmp_path, "session-page-bot-train")
        process.send_signal(signal.SIGINT)
        await page.wait_for_selector("#status.stopped", timeout=TIMEOUT * 1000)
        statuses = await page.eval_on_selector_all("#statuses li", "items => items.map(i => i.dataset.status)")
        assert statuses.count("stopped") == 1 and "completed" not in statuses, statuses
        messages = await page.eval_on_selector_all("#statuses li", "items => items.map(i => i.textContent)")
        assert not [m for m in messages if "evaluat" in m], messages  # evaluations are a graph, not statuses
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_page_opened_before_its_run_starts_waits_for_it(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """The SDK prints the run's address as the run starts, before its sender has created the session on the
    server: a page opened from it at once found no session and gave up (CI saw `bot train --server`'s page
    stay empty). The page says it waits, and fills when the run begins."""
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/not-yet")
    await page.wait_for_function("() => /waiting/.test(document.querySelector('#banner')?.textContent)")
    await create_session(client, "not-yet")
    points = [{"episode": episode, "current_reward": episode / 2} for episode in range(3)]
    assert (await client.post("/api/training/sessions/not-yet/metrics", json=points)).status_code == 200
    await page.wait_for_function(
        "() => window.sessionPage.charts.get('Reward')?.chart.points() === 3", timeout=3 * TIMEOUT * 1000
    )
    assert await page.text_content("#connection") == "connected"


async def test_history_is_drawn_before_the_live_join_answers(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """The charts are drawn from the history the page asked for in its <head> as soon as it is here, not
    after the WebSocket's snapshot as well: here the join never answers (the page's WebSocket goes to a
    handler in the browser that stays silent), and the history is drawn all the same."""
    session_id = await create_session(client, "drawn-early")
    points = [{"episode": episode, "current_reward": float(episode)} for episode in range(50)]
    assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=points)).status_code == 200
    page = await browser.new_page()
    await page.route_web_socket("**/ws/**", lambda ws: None)  # accepted, and never a word
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 50")
    assert await page.text_content("#connection") == "connecting"


async def test_no_console_error_and_the_icon_is_served(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """The browser's own `/favicon.ico` was the pages' only console error (a 404)."""
    ids = [await create_session(client, name) for name in ("icon-a", "icon-b")]
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    for path in ("/", f"/sessions/{ids[0]}", f"/compare?sessions={','.join(ids)}"):
        await page.goto(f"{live.url}{path}")
        await page.wait_for_load_state("networkidle")
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert errors == []


async def test_a_finished_0_based_run_reads_all_done(live: LiveServer, client: httpx.AsyncClient, browser: Any) -> None:
    """Episodes 0-299 of 300, completed: 300 / 300, on the list and the session page; running, it reads as sent."""
    session_id = await create_session(client, "zero-based", total_episodes=300)
    base = f"/api/training/sessions/{session_id}"
    await client.post(f"{base}/metrics", json=[{"episode": e, "current_reward": 1.0} for e in range(300)])
    await client.put(base, json={"status": "running"})
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_function("() => document.getElementById('episode').textContent === '299 / 300'")
    await client.put(base, json={"status": "completed"})
    await page.wait_for_function("() => document.getElementById('episode').textContent === '300 / 300'")
    assert await page.eval_on_selector("#progress", "bar => bar.value === bar.max")
    await page.goto(live.url)
    row = f"tr[data-session='{session_id}']"
    await page.wait_for_selector(row)
    assert "300/300" in (await page.text_content(row) or "")


async def test_picked_metrics_are_kept_in_the_url(live: LiveServer, client: httpx.AsyncClient, browser: Any) -> None:
    session_id = await create_session(client, "picked")
    points = [{"episode": e, "current_reward": 1.0, "custom": {"kl": 0.1, "entropy": 0.5}} for e in range(20)]
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=points)
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.check("#picker input[value=kl]")
    await page.check("#picker input[value=entropy]")
    await page.uncheck("#picker input[value=kl]")
    assert await page.evaluate("() => new URLSearchParams(location.search).getAll('metric')") == ["entropy"]
    await page.reload()
    await page.wait_for_function("() => window.sessionPage.charts.get('entropy')?.chart.points() === 20")
    assert await page.is_checked("#picker input[value=entropy]") and not await page.is_checked(
        "#picker input[value=kl]"
    )


async def test_one_legend_entry_per_metric_and_runs_by_name_in_compare(
    live: LiveServer, client: httpx.AsyncClient, browser: Any, tmp_path: Path
) -> None:
    """Smoothed, a metric has one legend entry, not "x (raw)" and "x"; compare names runs by their names, and
    its configuration table breaks no word."""
    ids = []
    for seed in range(3):
        metadata = {"learning_rate": 0.001 * (seed + 1), "exploration_fraction": 0.1}
        session_id = await create_session(
            client, f"run-with-a-long-identifier-of-forty-chars-{seed}", name=f"seed {seed}", metadata=metadata
        )
        await client.post(
            f"/api/training/sessions/{session_id}/metrics",
            json=[{"episode": e, "current_reward": float(e + seed)} for e in range(50)],
        )
        ids.append(session_id)
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{live.url}/compare?sessions={','.join(ids)}&smoothing=0.6")
    await page.wait_for_function("() => window.comparePage.chart()?.points() === 50")
    legend = await page.eval_on_selector_all(
        ".chart .u-legend .u-series", "rows => rows.filter(r => r.offsetParent !== null).map(r => r.textContent)"
    )
    assert len(legend) == 4 and all("raw" not in row for row in legend), legend  # x, then one per run
    assert [row[: len("seed 0")] for row in legend[1:]] == ["seed 0", "seed 1", "seed 2"], legend
    one_line = """cell => { const range = document.createRange(); range.selectNodeContents(cell);
        return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size === 1; }"""
    for key in ("metadata.learning_rate", "metadata.exploration_fraction"):
        assert await page.eval_on_selector(f"tr[data-key='{key}'] th", one_line), key


async def test_the_summary_fits_a_phone(live: LiveServer, client: httpx.AsyncClient, browser: Any) -> None:
    session_id = await create_session(client, "phone")
    point = {"episode": 1, "current_reward": 123456.789, "average_reward": -98765.4321, "loss_value": 0.000123}
    point["custom"] = {"system/cpu_percent": 12.5}
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=[point])
    page = await browser.new_page(viewport={"width": 375, "height": 800})
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_selector("#summary tr[data-metric=loss_value]")
    fits = "t => t.parentElement.scrollWidth <= t.parentElement.clientWidth"
    assert await page.eval_on_selector("#summary-table", fits)
    # A long name breaks after "/" or "_", never inside a word ("system/cp|u_percent" before).
    lines = await page.eval_on_selector(
        "#summary tr[data-metric='system/cpu_percent'] td",
        """td => { const range = document.createRange(), ends = [];
            for (const node of td.childNodes) if (node.nodeType === 3) {
                range.selectNodeContents(node); ends.push(range.getClientRects().length); }
            return ends; }""",
    )
    assert all(rects == 1 for rects in lines), lines  # each piece on one line


async def test_step_is_the_engines_own_and_every_chart_follows_it(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """x "step" is the step the engine sent (else the episode, else the message number, and the axis says
    which); a graph's points that carry no step take the run's at their time, so the graph follows the x axis
    and the zoom of the other charts."""
    t0 = 1_700_000_000.0
    session_id = await create_session(client, "own-steps")
    base = f"/api/training/sessions/{session_id}"
    points = [{"episode": e, "step": 100 * e, "current_reward": float(e), "timestamp": t0 + e} for e in range(50)]
    assert (await client.post(f"{base}/metrics", json=points)).status_code == 200
    graph = {
        "graph_id": "evaluation",
        "data_points": {"eval": [{"timestamp": t0 + t, "value": 1.0} for t in (10.5, 20.5, 30.5)]},
    }
    assert (await client.post(f"{base}/graph_update", json=graph)).status_code == 200
    plain = await create_session(client, "episodes-only")
    await client.post(
        f"/api/training/sessions/{plain}/metrics", json=[{"episode": e, "current_reward": 1.0} for e in range(5)]
    )

    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{live.url}/sessions/{session_id}")
    xs = "name => window.sessionPage.charts.get(name)?.chart.plot.data[0] ?? []"
    # Drawn, not only held: a chart draws its points at the next animation frame.
    await page.wait_for_function(f"() => ({xs})('graph:evaluation').length === 3 && ({xs})('Reward').length >= 3")
    label = "name => window.sessionPage.charts.get(name).chart.plot.axes[0].label"
    assert await page.evaluate(label, "Reward") == "step"
    assert (await page.evaluate(xs, "Reward"))[:3] == [0, 100, 200]
    assert await page.evaluate(xs, "graph:evaluation") == [1000, 2000, 3000]
    await page.select_option("#x-axis", "episode")
    await page.wait_for_function(f"() => ({xs})('graph:evaluation')[0] === 10")
    assert await page.evaluate(xs, "graph:evaluation") == [10, 20, 30]  # no longer blank on "episode"
    await page.select_option("#x-axis", "step")
    await page.evaluate("() => TMS.setView({ zoom: [1500, 4900] })")
    scale = "name => { const x = window.sessionPage.charts.get(name).chart.plot.scales.x; return [x.min, x.max]; }"
    await page.wait_for_function(f"() => ({scale})('graph:evaluation')[0] === 1500")
    assert await page.evaluate(scale, "graph:evaluation") == [1500, 4900] == await page.evaluate(scale, "Reward")

    live_point = {"graph_id": "evaluation", "data_points": {"eval": [{"timestamp": t0 + 49.5, "value": 2.0}]}}
    assert (await client.post(f"{base}/graph_update", json=live_point)).status_code == 200
    await page.wait_for_function("() => window.sessionPage.charts.get('graph:evaluation').chart.points() === 4")
    await page.wait_for_function(f"() => ({xs})('graph:evaluation').includes(4900)")

    await page.goto(f"{live.url}/sessions/{plain}")
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 5")
    assert await page.evaluate(label, "Reward") == "episode (no step sent)"


X_TICKS = """name => {
    const chart = name === 'policy' ? window.sessionPage.policy() : window.sessionPage.charts.get(name).chart.plot;
    const axis = chart.axes[0], ctx = chart.ctx;
    ctx.font = axis.font[0];
    const left = chart.bbox.left / devicePixelRatio;
    return axis._values.map((label, i) => {
        const centre = left + chart.valToPos(axis._splits[i], 'x');
        const width = ctx.measureText(label).width / devicePixelRatio;
        return [label, centre - width / 2, centre + width / 2];
    }).concat([['canvas', 0, chart.width]]);
}"""


async def test_x_labels_never_collide_nor_are_cut(live: LiveServer, client: httpx.AsyncClient, browser: Any) -> None:
    """At a million steps, at a phone's width and a wide screen's: every x label apart and inside the chart."""
    session_id = await create_session(client, "a-million")
    points = [{"episode": e, "current_reward": 1.0} for e in (0, 250_000, 999_999, 1_000_000)]
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=points)
    for width in (375, 800, 1600):
        page = await browser.new_page(viewport={"width": width, "height": 800})
        await page.goto(f"{live.url}/sessions/{session_id}")
        await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 4")
        *labels, (_, _, right) = await page.evaluate(X_TICKS, "Reward")
        assert len(labels) >= 2 and labels[-1][0] in ("1M", "1.0M"), labels
        assert all(a[2] < b[1] for a, b in zip(labels, labels[1:], strict=False)), (width, labels)  # none overlap
        assert labels[0][1] >= 0 and labels[-1][2] <= right, (width, labels)  # none cut
        await page.close()


async def test_zoomed_in_x_labels_each_say_their_own_value(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """Zoomed into ten steps of a million, or four of 123,456, every tick's label is its own: the labels take
    the digits their spacing needs ("999.99K" six times was the zoomed chart's axis), and none overlap."""
    session_id = await create_session(client, "zoomed")
    points = [{"episode": e, "step": e, "current_reward": 1.0} for e in (0, 123_456, 123_460, 999_990, 1_000_000)]
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=points)
    for zoom in ("999990,1000000", "123456.5,123460.2", "0,1000000"):
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{live.url}/sessions/{session_id}?zoom={zoom}")
        await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 5")
        *labels, (_, _, right) = await page.evaluate(X_TICKS, "Reward")
        texts = [label for label, _, _ in labels]
        assert len(texts) >= 3 and len(set(texts)) == len(texts), (zoom, texts)
        assert all(a[2] < b[1] for a, b in zip(labels, labels[1:], strict=False)), (zoom, labels)
        assert labels[0][1] >= 0 and labels[-1][2] <= right, (zoom, labels)  # "1,000,00" was cut
        await page.close()


def read_label(label: str) -> float:
    """A tick label's number: "2.5K" is 2,500, "1,000,000" is a million."""
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}.get(label[-1], 1)
    return float(label.rstrip("KMB").replace(",", "")) * scale


async def test_x_labels_say_their_ticks_exactly(live: LiveServer, client: httpx.AsyncClient, browser: Any) -> None:
    """Ticks every 2,500 steps read "2.5K", not "3K" (a label rounded to the nearest thousand)."""
    session_id = await create_session(client, "exact-ticks")
    points = [{"episode": i, "step": 50 * i, "current_reward": 1.0} for i in range(400)]
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=points)
    for width in (1280, 700):
        page = await browser.new_page(viewport={"width": width, "height": 800})
        await page.goto(f"{live.url}/sessions/{session_id}")
        await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 400")
        ticks = await page.evaluate(
            "() => { const a = window.sessionPage.charts.get('Reward').chart.plot.axes[0];"
            " return [a._splits, a._values]; }"
        )
        assert all(read_label(label) == value for value, label in zip(*ticks, strict=True)), (width, ticks)
        await page.close()


async def test_sparse_decisions_are_read_in_buckets_that_mean_something(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """A decision each 20 metrics: the policy chart's points hold 20 decisions or more, its title says how
    many, and it follows the page's x axis (here the engine's step)."""
    session_id = await create_session(client, "sparse-decisions")
    base = f"/api/training/sessions/{session_id}"
    t0 = 1_700_000_000.0
    for e in range(100):
        metrics = [{"episode": e, "step": 1000 * e + i, "current_reward": 1.0, "timestamp": t0 + e} for i in range(20)]
        await client.post(f"{base}/metrics", json=metrics)
        await client.post(f"{base}/bot_decision", json={"selected_action": e % 2, "timestamp": t0 + e + 0.5})
    page = await browser.new_page(viewport={"width": 1200, "height": 1200})
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_function("() => window.sessionPage.policy()?.data[0].length > 0")
    title = await page.evaluate("() => window.sessionPage.policy().root.querySelector('.u-title').textContent")
    assert title == "20 decisions a point (100 in all)", title
    shares = await page.evaluate("() => window.sessionPage.policy().data[1]")
    assert all(40 <= share <= 60 for share in shares), shares  # no 0 / 100 % noise
    xs = await page.evaluate("() => window.sessionPage.policy().data[0]")
    assert xs == sorted(xs) and xs[-1] == 99_019, xs  # the run's step at the last decision's time
    assert await page.evaluate("() => window.sessionPage.policy().axes[0].label") == "step"
    assert await page.evaluate("() => window.sessionPage.policy().cursor.sync.key") == "tms"  # moves with the rest
    spans = (
        "() => [window.sessionPage.policy(), window.sessionPage.charts.get('Reward').chart.plot]"
        ".map(c => [c.scales.x.min, c.scales.x.max])"
    )
    policy_span, reward_span = await page.evaluate(spans)
    assert policy_span == reward_span  # the same x range as the other charts, not from its first bucket on
    after_switch = """async () => {
        window.TMS.setView({ x: "episode" });
        await new Promise((done) => setTimeout(done, 50));  // the page's own listeners have all run
        return [window.sessionPage.policy(), window.sessionPage.charts.get('Reward').chart.plot]
            .map(c => [c.scales.x.min, c.scales.x.max]);
    }"""
    policy_span, reward_span = await page.evaluate(after_switch)
    assert policy_span == reward_span and reward_span[1] < 1000  # episodes now, on both (it kept steps for 5 s)


async def test_smoothing_is_one_curve_across_the_history_to_live_seam(live: LiveServer, browser: Any) -> None:
    """History downsampled to a point every 10 steps, then a live point every step, of a rising line: the
    smoothed curve trails the line by about as many steps on both sides of the seam (smoothing each point
    alike, it trailed by 90 steps before the seam and 9 after it: two curves)."""
    page = await browser.new_page()
    await page.goto(f"{live.url}/compare")  # any page with the charts
    lags = await page.evaluate(
        """() => {
        const xs = [...Array(100).keys()].map((i) => 10 * i).concat([...Array(500).keys()].map((i) => 991 + i));
        const smoothed = TMS.smooth(xs, xs, 0.9);
        const lag = (x) => x - smoothed[xs.indexOf(x)];
        return [lag(980), lag(1490)];
    }"""
    )
    history, live_tail = lags
    assert 0 < history and 0 < live_tail and max(lags) / min(lags) < 2, lags


async def test_the_list_shows_each_runs_main_metric_and_duration(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """As W&B's runs table: the reward's last and best value, and how long the run ran."""
    session_id = await create_session(client, "headline")
    t0 = 1_700_000_000.0
    points = [{"episode": e, "current_reward": r, "timestamp": t0 + e} for e, r in enumerate([3.0, 250.5, 12.0])]
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=points)
    listed = (await client.get("/api/training/sessions")).json()["sessions"][0]
    assert listed["main_metric"] == {"name": "current_reward", "last": 12.0, "best": 250.5}
    assert listed["duration_seconds"] >= 0
    page = await browser.new_page()
    await page.goto(live.url)
    row = f"tr[data-session='{session_id}']"
    await page.wait_for_selector(f"{row} td.main-metric")
    assert await page.text_content(f"{row} td.main-metric") == "12 / 250.5"
    assert (await page.text_content(f"{row} td.duration") or "").endswith(" s")
    # A run of a fraction of a second does not read "0 s"; longer ones keep two units.
    shown = await page.evaluate("() => [0.4, 7.25, 42, 185, 7300].map(duration)")
    assert shown == ["0.4 s", "7.3 s", "42 s", "3 min 5 s", "2 h 1 min"], shown


async def test_system_metrics_are_charted_in_their_own_group(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """The SDK's system samples (CPU %, memory, threads) get charts of their own, after the run's."""
    session_id = await create_session(client, "costs")
    points = [{"episode": e, "step": 10 * e, "current_reward": 1.0} for e in range(10)]
    samples = [
        {
            "episode": e,
            "step": 10 * e,
            "custom": {"system/cpu_percent": 95.0 + e, "system/rss_mb": 512.0, "system/threads": 9.0},
        }
        for e in range(0, 10, 3)
    ]
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=points + samples)
    page = await browser.new_page(viewport={"width": 1200, "height": 1000})
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_function("() => window.sessionPage.charts.get('System · CPU (%)')?.chart.points() === 4")
    order = await page.eval_on_selector_all("#charts .chart", "boxes => boxes.map(b => b.dataset.chart)")
    assert order == ["Reward", "System · CPU (%)", "System · memory (MB)", "System · threads"], order
    assert await page.query_selector("#picker input[value='system/cpu_percent']") is None  # a group, not a pick


async def test_a_page_open_from_the_start_grows_as_the_run_does(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """Opened before any point (as the training form and `bot train` send people), the page gets, live, what
    a reload would show: the metric picker offers each metric as it first arrives, the system samples get
    their group's charts, and NaN points are left out as history leaves them out (a loss logged every third
    episode, NaN in between, was a chart of lone dots with no line)."""
    session_id = await create_session(client, "from-the-start")
    page = await browser.new_page(viewport={"width": 1200, "height": 1000})
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_selector("#connection.connected")
    for first in range(0, 40, 5):
        batch = []
        for e in range(first, first + 5):
            point: dict[str, Any] = {"episode": e, "step": 100 * e, "current_reward": float(e)}
            point["loss_value"] = 0.5 if e % 3 == 0 else "NaN"
            point["custom"] = {
                "kl": e / 100,
                **({"system/cpu_percent": 50.0, "system/threads": 4.0} if e % 10 == 0 else {}),
            }
            batch.append(point)
        assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=batch)).status_code == 200
    await page.wait_for_function("() => window.sessionPage.charts.get('System · CPU (%)')?.chart.points() === 4")
    await page.wait_for_selector("#picker input[value='kl']")
    picks = await page.eval_on_selector_all("#picker input", "boxes => boxes.map(b => b.value)")
    assert {"Reward", "Loss", "System · CPU (%)", "System · threads", "kl"} <= set(picks), picks
    loss = await page.evaluate("() => window.sessionPage.charts.get('Loss').chart.series.get('loss_value').value")
    assert loss == [0.5] * 14, loss
    await page.check("#picker input[value='kl']")  # picked live, it shows what was stored so far
    await page.wait_for_function("() => window.sessionPage.charts.get('kl')?.chart.points() === 40")


async def test_live_charts_and_the_picker_agree(live: LiveServer, client: httpx.AsyncClient, browser: Any) -> None:
    """A group whose first values are NaN (DQN's loss before learning starts) gets its chart from its first
    real value, ticked in the picker, and ticking it again adds no second chart; a chart the spectator took
    off stays off as points arrive; the summary counts NaN apart, as the charts do."""
    session_id = await create_session(client, "picked-live")
    base = f"/api/training/sessions/{session_id}/metrics"
    page = await browser.new_page(viewport={"width": 1200, "height": 1000})
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_selector("#connection.connected")
    await client.post(base, json={"episode": 1, "step": 100, "current_reward": 1.0, "loss_value": "NaN"})
    await client.post(base, json={"episode": 2, "step": 200, "current_reward": 2.0, "loss_value": 0.4})
    await page.wait_for_function("() => window.sessionPage.charts.get('Loss')?.chart.points() === 1")
    assert await page.is_checked("#picker input[value='Loss']")
    await page.uncheck("#picker input[value='Loss']")
    await page.check("#picker input[value='Loss']")
    await page.wait_for_function("() => window.sessionPage.charts.get('Loss')?.chart.points() === 1")
    await page.uncheck("#picker input[value='Reward']")
    await client.post(
        base, json=[{"episode": e, "step": 100 * e, "current_reward": 1.0, "loss_value": 0.3} for e in (3, 4, 5)]
    )
    await page.wait_for_function("() => window.sessionPage.charts.get('Loss')?.chart.points() === 4")
    shown = await page.eval_on_selector_all("#charts .chart", "boxes => boxes.map(b => b.dataset.chart)")
    assert shown == ["Loss"], shown
    assert not await page.is_checked("#picker input[value='Reward']")
    await page.wait_for_function(  # the summary is read every 5 s
        "() => document.querySelector('#summary tr[data-metric=loss_value] td:last-child')?.textContent"
        " === '4 (+1 NaN)'",
        timeout=15_000,
    )


async def test_tags_are_set_on_the_page_and_the_list_filters_and_groups_by_them(
    live: LiveServer, client: httpx.AsyncClient, browser: Any, tmp_path: Path
) -> None:
    a = await create_session(client, "tag-a", name="A", tags=["baseline"])
    b = await create_session(client, "tag-b", name="B", tags=["baseline", "big-lr"])
    await create_session(client, "tag-c", name="C")
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{live.url}/sessions/{a}")
    await page.wait_for_selector("#tags .tag[data-tag=baseline]")
    await page.fill("#tag-input", "best")
    await page.press("#tag-input", "Enter")
    await page.wait_for_selector("#tags .tag[data-tag=best]")
    await page.click("#tags .tag[data-tag=baseline] button")
    await page.wait_for_selector("#tags .tag[data-tag=baseline]", state="detached")
    assert (await client.get(f"/api/training/sessions/{a}")).json()["tags"] == ["best"]
    await page.fill("#tag-input", 'bad "tag"')  # refused by the server, said, nothing changed
    await page.press("#tag-input", "Enter")
    await page.wait_for_selector("#banner.shown")
    assert "Tags not saved" in (await page.text_content("#banner") or "")
    assert (await client.get(f"/api/training/sessions/{a}")).json()["tags"] == ["best"]

    await page.goto(live.url)
    await page.wait_for_selector(f"tr[data-session={b}] .tag[data-tag=big-lr]")
    await page.click(f"tr[data-session={b}] .tag[data-tag=baseline]")
    await page.wait_for_function("() => new URLSearchParams(location.search).get('tag') === 'baseline'")
    await page.wait_for_function("() => document.querySelectorAll('#sessions tr[data-session]').length === 1")
    assert await page.get_attribute("#sessions tr[data-session]", "data-session") == b
    await page.click("#tag-filter-clear")
    await page.check("#group-by-tag")
    await page.wait_for_selector("#sessions tr.group[data-group=untagged]")
    groups = await page.eval_on_selector_all(
        "#sessions tr", "rows => rows.map(r => r.dataset.group || r.dataset.session)"
    )
    assert groups == ["baseline", b, "best", a, "big-lr", b, "untagged", "tag-c"], groups
    assert "group=tag" in page.url
    await snap(page, tmp_path, "list")


async def test_relative_time_starts_at_the_runs_first_point(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """Points the engine stamped before the server created its session (the SDK creates it as the run
    starts) do not fall before 0 on the relative time axis."""
    session_id = await create_session(client, "early-points")
    created = (await client.get(f"/api/training/sessions/{session_id}")).json()["created_at"]
    t0 = datetime.fromisoformat(created).timestamp() - 5
    points = [{"episode": e, "current_reward": 1.0, "timestamp": t0 + e} for e in range(10)]
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=points)
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}?x=relative")
    # What the plot drew, read when it is drawn: a chart holds its points at once and draws them at the next
    # animation frame, so reading the plot right after its points arrived could find it not drawn yet.
    drawn = await page.wait_for_function(
        "() => { const xs = window.sessionPage.charts.get('Reward')?.chart.plot.data[0];"
        " return xs?.length === 10 && Array.from(xs); }"
    )
    xs = await drawn.json_value()
    assert xs[0] == 0 and xs[-1] == 9, xs


async def test_the_run_panel_follows_a_configuration_given_later(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """A job's configuration reaches its session once its process has read it: the open page shows it."""
    session_id = await create_session(client, "late-config", metadata={"job_id": "job-1"})
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_selector("#connection.connected")
    update = {"metadata": {"job_id": "job-1", "config": {"learning_rate": 0.001}}}
    assert (await client.put(f"/api/training/sessions/{session_id}", json=update)).status_code == 200
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#config th')].some(th => th.textContent === 'config.learning_rate')",
        timeout=TIMEOUT * 1000,
    )
