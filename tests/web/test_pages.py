"""The spectator pages in a real browser (Debian's Chromium, driven headless by Playwright)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import LiveServer, create_session
from tests.web.conftest import BROWSER_TESTS, snap

pytestmark = BROWSER_TESTS


async def push(client: httpx.AsyncClient, session_id: str, episodes: range) -> None:
    body = [
        {
            "episode": e,
            "current_reward": float(e % 10),
            "average_reward": 4.5,
            "loss_value": 1 / (e + 1),
            "epsilon": 0.5,
            "win_rate": 50.0,
            "custom": {"kl": 0.01},
        }
        for e in episodes
    ]
    assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)).status_code == 200


async def test_session_page_shows_history_live_points_decision_and_spectators(
    live: LiveServer, client: httpx.AsyncClient, browser: Any, tmp_path: Path, server_factory: Any, settings: Any
) -> None:
    """A person sees the charts fill from history then live, the decision bars, the count, a lost server,
    and, when it is back, the page reconnects by itself and fills the gap."""
    session_id = await create_session(client, "web-run", algorithm="DQN", total_episodes=500)
    await client.put(f"/api/training/sessions/{session_id}", json={"status": "running"})
    await push(client, session_id, range(200))  # history, before the page opens

    page = await browser.new_page(viewport={"width": 1200, "height": 1000})
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_selector("#connection.connected")
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 200")

    await push(client, session_id, range(200, 260))  # live
    decision = {
        "action_probabilities": {"left": 0.2, "right": 0.7, "fire": 0.1},
        "q_values": [0.1, 0.9, 0.0],
        "selected_action": "right",
        "confidence_score": 0.7,
    }
    await client.post(f"/api/training/sessions/{session_id}/bot_decision", json=decision)
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward').chart.points() === 260")
    await page.wait_for_selector("#probabilities .bar.selected[data-action='right']")

    bars = await page.eval_on_selector_all(
        "#probabilities .bar", "bars => bars.map(b => [b.dataset.action, +b.dataset.probability])"
    )
    assert bars == [["left", 0.2], ["right", 0.7], ["fire", 0.1]]
    assert await page.text_content("#chosen") == "right"
    assert await page.text_content("#spectators") == "1"
    assert await page.text_content("#status") == "running"
    assert await page.text_content("#episode") == "259 / 500"
    kl = await page.query_selector("#picker input[value='kl']")
    assert kl is not None
    await kl.check()
    await page.wait_for_function("() => window.sessionPage.charts.get('kl')?.chart.points() === 260")
    times = {"graph_id": "times", "title": "Step time", "y_label": "ms"}
    times["data_points"] = {"forward": [{"value": 3.0 + i % 7} for i in range(60)]}
    await client.post(f"/api/training/sessions/{session_id}/graph_update", json=times)
    await page.wait_for_function("() => window.sessionPage.charts.get('graph:times')?.chart.points() === 60")
    await page.fill("#smoothing", "0.6")
    await page.dispatch_event("#smoothing", "input")
    await snap(page, tmp_path, "session-page")

    await live.stop()
    await page.wait_for_selector("#banner.shown")
    assert "reach the server" in (await page.text_content("#banner") or "")

    back = await server_factory(settings, port=live.port)
    async with httpx.AsyncClient(base_url=back.url) as again:
        await push(again, session_id, range(260, 300))
    await page.wait_for_selector("#connection.connected")
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward').chart.points() === 300")


async def test_graph_update_graphs_are_drawn_backfilled_and_live(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """The README's `log_graph` example: each graph gets its own chart, titled and labelled, with its series,
    from the join's snapshot and then live; a chart with no data (here Win rate and Loss) is not shown."""
    session_id = await create_session(client, "graphs")
    base = f"/api/training/sessions/{session_id}"
    await client.post(f"{base}/metrics", json=[{"episode": e, "current_reward": 20_000.0 + e} for e in range(20)])
    graph = {
        "graph_id": "perf",
        "title": "Step time",
        "y_label": "ms",
        "data_points": {"forward": [{"value": 3.0}] * 30},
    }
    assert (await client.post(f"{base}/graph_update", json=graph)).status_code == 200
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_function("() => window.sessionPage.charts.get('graph:perf')?.chart.points() === 30")
    assert await page.text_content(".chart[data-chart='graph:perf'] .u-title") == "Step time"
    assert await page.evaluate("() => window.sessionPage.charts.get('graph:perf').chart.plot.axes[1].label") == "ms"
    more = {"graph_id": "perf", "data_points": {"forward": [{"value": 4.0}] * 5, "backward": [{"value": 6.0}] * 5}}
    assert (await client.post(f"{base}/graph_update", json=more)).status_code == 200
    await page.wait_for_function("() => window.sessionPage.charts.get('graph:perf').chart.points() === 35")
    rows = "document.querySelectorAll(\".chart[data-chart='graph:perf'] .u-legend .u-series\")"
    legend = f"() => [...{rows}].map(r => r.textContent)"
    await page.wait_for_function(f"() => ({legend})().some(row => row.includes('backward'))")  # drawn at the next frame
    assert any("forward" in row for row in await page.evaluate(legend))
    shown = await page.evaluate("() => [...window.sessionPage.charts.keys()].sort()")
    assert shown == ["Reward", "graph:perf"]
    # The y labels fit: the axis is at least as wide as its widest tick label ("20,015" must not read "0,015").
    fits = await page.evaluate(
        """() => { const u = window.sessionPage.charts.get('Reward').chart.plot, axis = u.axes[1];
        u.ctx.font = axis.font[0];
        const widest = Math.max(...axis._values.map(v => u.ctx.measureText(v).width / devicePixelRatio));
        return [axis._size, widest]; }"""
    )
    assert fits[0] > fits[1] > 0, fits


async def test_smoothing_log_scale_x_axis_and_zoom_are_kept_in_the_url(
    live: LiveServer, client: httpx.AsyncClient, browser: Any, tmp_path: Path
) -> None:
    """Smoothing draws a debiased moving average over the faint raw line; log scale and the x axis change
    the chart; a drag zooms every chart; and a reload (the URL) shows the same view."""
    session_id = await create_session(client, "view")
    await push(client, session_id, range(100))
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{live.url}/sessions/{session_id}")
    # Drawn, not only held: a chart draws its points at the next animation frame.
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.plot.data[0]?.length === 100")
    columns = "() => window.sessionPage.charts.get('Reward').chart.plot.data.length"
    assert await page.evaluate(columns) == 3  # x, current_reward, average_reward: no smoothing yet

    await page.fill("#smoothing", "0.9")
    await page.dispatch_event("#smoothing", "input")
    await page.wait_for_function(f"() => ({columns})() === 5")
    raw, smoothed = await page.evaluate(
        "() => { const d = window.sessionPage.charts.get('Reward').chart.plot.data; return [d[1], d[2]]; }"
    )
    assert raw[:3] == [0.0, 1.0, 2.0] and smoothed[0] == raw[0]  # debiased: the first point is not pulled to 0
    assert smoothed[2] == pytest.approx((0.9 * 0.1 * 1.0 + 0.1 * 2.0) / (1 - 0.9**3))

    await page.select_option("#y-scale", "log")
    await page.wait_for_function("() => window.sessionPage.charts.get('Loss').chart.plot.scales.y.distr === 3")
    await page.select_option("#x-axis", "episode")
    box = await page.query_selector(".chart[data-chart='Loss'] .u-over")
    assert box is not None
    area = await box.bounding_box()
    assert area is not None
    y = area["y"] + area["height"] / 2
    await page.mouse.move(area["x"] + area["width"] * 0.25, y)
    await page.mouse.down()
    await page.mouse.move(area["x"] + area["width"] * 0.75, y, steps=5)
    await page.mouse.up()
    await page.wait_for_function("() => new URLSearchParams(location.search).has('zoom')")
    zoom = await page.evaluate("() => new URLSearchParams(location.search).get('zoom').split(',').map(Number)")
    assert 20 < zoom[0] < zoom[1] < 80

    await page.reload()
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 100")
    assert await page.input_value("#x-axis") == "episode" and await page.input_value("#y-scale") == "log"
    assert await page.input_value("#smoothing") == "0.9"
    scale = await page.evaluate(
        "() => { const x = window.sessionPage.charts.get('Reward').chart.plot.scales.x; return [x.min, x.max]; }"
    )
    assert scale == pytest.approx(zoom)
    await page.dblclick(".chart[data-chart='Loss'] .u-over")  # uPlot's own reset clears the kept zoom too
    await page.wait_for_function("() => !new URLSearchParams(location.search).has('zoom')")
    await page.mouse.move(area["x"] + area["width"] * 0.25, y)
    await page.mouse.down()
    await page.mouse.move(area["x"] + area["width"] * 0.75, y, steps=5)
    await page.mouse.up()
    await page.wait_for_function("() => new URLSearchParams(location.search).has('zoom')")
    await page.click("#reset-zoom")
    await page.wait_for_function("() => !new URLSearchParams(location.search).has('zoom')")
    assert await page.evaluate("() => window.sessionPage.charts.get('Reward').chart.plot.scales.x.max") == 99


async def test_run_panel_shows_configuration_and_status_history(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """The run's configuration (its metadata, nested keys dotted), algorithm and episodes, and every status
    change, from history and then live."""
    metadata = {"lr": 0.001, "optimizer": {"name": "adam", "betas": [0.9, 0.999]}}
    session_id = await create_session(client, "config", algorithm="PPO", total_episodes=100, metadata=metadata)
    await client.put(f"/api/training/sessions/{session_id}", json={"status": "running"})
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_selector("#statuses li[data-status=running]", state="attached")
    config = await page.eval_on_selector_all(
        "#config tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
    )
    assert config == [["lr", "0.001"], ["optimizer.name", "adam"], ["optimizer.betas", "[0.9,0.999]"]]
    assert "PPO" in (await page.text_content("#facts") or "")
    await client.post(
        f"/api/training/sessions/{session_id}/metrics",
        json=[{"episode": e, "current_reward": float(e), "loss_value": 10.0 - e} for e in range(150)],
    )
    await page.reload()
    await page.wait_for_selector("#summary tr[data-metric=loss_value]")
    summary = await page.eval_on_selector_all(
        "#summary tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    # best is the highest reward and the lowest loss; the mean is of episodes 50-149
    assert summary == [["current_reward", "149", "149", "99.5", "150"], ["loss_value", "-139", "-139", "-89.5", "150"]]
    await client.put(f"/api/training/sessions/{session_id}", json={"status": "completed", "message": "solved"})
    await page.wait_for_selector("#statuses li[data-status=completed]", state="attached")
    statuses = await page.eval_on_selector_all("#statuses li", "items => items.map(i => i.dataset.status)")
    assert statuses == ["running", "completed"]
    assert "solved" in (await page.text_content("#statuses li[data-status=completed]") or "")


async def test_decisions_over_time_show_the_policy_change(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """Besides the latest decision's bars: the share of each chosen action and the mean confidence over the
    whole history, following the run as decisions arrive."""
    session_id = await create_session(client, "policy")
    decisions = [{"selected_action": "left", "confidence_score": 0.4}] * 100
    decisions += [{"selected_action": "right", "confidence_score": 0.8}] * 100
    assert (await client.post(f"/api/training/sessions/{session_id}/bot_decision", json=decisions)).status_code == 200
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_function("() => window.sessionPage.policy() !== null")
    labels, first, last = await page.evaluate(
        """() => { const u = window.sessionPage.policy(), d = u.data;
        return [u.series.slice(1).map(s => s.label), d.map(c => c[0]), d.map(c => c[c.length - 1])]; }"""
    )
    assert labels == ["chose left (%)", "chose right (%)", "mean confidence (%)"]
    assert first[1:] == pytest.approx([100, 0, 40]) and last[1:] == pytest.approx([0, 100, 80])
    more = [{"selected_action": "fire", "confidence_score": 1.0}] * 300
    assert (await client.post(f"/api/training/sessions/{session_id}/bot_decision", json=more)).status_code == 200
    await page.wait_for_function(
        "() => window.sessionPage.policy().series.some(s => s.label === 'chose fire (%)')", timeout=20_000
    )


async def test_export_from_the_page_returns_every_point(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """The run panel's CSV (every metric) and JSON (the whole history) and a chart's own export: downloads
    served by the API, holding every point, not the chart's downsampled copy."""
    session_id = await create_session(client, "export")
    await push(client, session_id, range(3000))
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}")
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() > 0")
    async with page.expect_download() as csv_download:
        await page.click("#export-csv")
    lines = Path(await (await csv_download.value).path()).read_text().splitlines()
    assert lines[0] == "seq,timestamp,episode,step,average_reward,current_reward,epsilon,kl,loss_value,win_rate"
    assert len(lines) == 3001 and lines[-1].startswith("3000,")
    async with page.expect_download() as json_download:
        await page.click("#export-json")
    messages = orjson.loads(Path(await (await json_download.value).path()).read_bytes())
    assert [m["seq"] for m in messages] == list(range(1, 3001))
    async with page.expect_download() as chart_download:
        await page.click(".chart[data-chart='Loss'] .save")
    download = await chart_download.value
    assert download.suggested_filename == f"{session_id}.csv"
    assert Path(await download.path()).read_text().splitlines()[0] == "seq,timestamp,episode,step,loss_value"


async def test_phone_width_and_both_themes(
    live: LiveServer, client: httpx.AsyncClient, browser: Any, tmp_path: Path
) -> None:
    """At 375 px nothing scrolls sideways, on the session page and the list; the dark theme follows the system."""
    session_id = await create_session(client, "phone", metadata={"a_rather_long_configuration_key": "x" * 80})
    await push(client, session_id, range(30))
    for scheme, background in [("light", "rgb(245, 247, 250)"), ("dark", "rgb(15, 20, 25)")]:
        page = await browser.new_page(viewport={"width": 375, "height": 800}, color_scheme=scheme)
        await page.goto(f"{live.url}/sessions/{session_id}")
        await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 30")
        width = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        wide = """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >
            document.documentElement.clientWidth + 0.5).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
        assert await page.evaluate(width), await page.evaluate(wide)
        assert await page.evaluate("() => getComputedStyle(document.body).backgroundColor") == background
        await snap(page, tmp_path, f"phone-session-{scheme}")
        await page.goto(live.url)
        await page.wait_for_selector(f"tr[data-session='{session_id}']")
        assert await page.evaluate(width)
        await snap(page, tmp_path, f"phone-list-{scheme}")
        await page.close()


async def test_a_fast_live_run_keeps_a_bounded_series_per_chart(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """Points arriving faster than a chart has pixels, smoothing on: each series keeps a bounded, decimated
    copy (the page's memory stays bounded), with the newest point always drawn."""
    session_id = await create_session(client, "fast")
    await push(client, session_id, range(1))
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}?smoothing=0.6")
    await page.wait_for_function("() => window.sessionPage.charts.get('Reward')?.chart.points() === 1")
    for start in range(1, 12_001, 1000):
        await push(client, session_id, range(start, start + 1000))
    newest = (
        "() => { const d = window.sessionPage.charts.get('Reward').chart.plot.data; return d[0][d[0].length - 1]; }"
    )
    await page.wait_for_function(f"() => ({newest})() >= 12000")
    kept = await page.evaluate("() => window.sessionPage.charts.get('Reward').chart.points()")
    assert 2000 <= kept <= 4000


async def test_live_data_for_every_chart_draws_one_chart_a_frame_and_each_chart_catches_up(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """Every chart of the page fed by each push: drawing them all in the frame the data came in made frames of
    50 ms at 1,000 points/s (bench/page.py); a frame draws one, and each still ends on the newest point."""
    session_id = await create_session(client, "frames")
    await push(client, session_id, range(1))
    page = await browser.new_page()
    await page.goto(f"{live.url}/sessions/{session_id}?smoothing=0.6")
    await page.wait_for_function("() => window.sessionPage.charts.size >= 4")
    await page.evaluate(
        """() => {
        window.draws_ = { frame: 0, most: 0, total: 0 };
        for (const { chart } of window.sessionPage.charts.values()) {
          const setData = chart.plot.setData;
          chart.plot.setData = (...args) => { window.draws_.frame++; window.draws_.total++; setData(...args); };
        }
        (function frame() {
          window.draws_.most = Math.max(window.draws_.most, window.draws_.frame);
          window.draws_.frame = 0;
          requestAnimationFrame(frame);
        })();
      }"""
    )
    for start in range(1, 2001, 100):
        await push(client, session_id, range(start, start + 100))
    newest = """() => [...window.sessionPage.charts.values()].every(({ chart }) => {
      const x = chart.plot.data[0]; return x.length && x[x.length - 1] >= 2000; })"""
    await page.wait_for_function(newest)
    draws = await page.evaluate("() => window.draws_")
    assert draws["total"] >= len(await page.evaluate("() => [...window.sessionPage.charts.keys()]"))
    assert draws["most"] == 1


async def test_room_page_asks_for_the_password(live: LiveServer, client: httpx.AsyncClient, browser: Any) -> None:
    """Opening a protected room by its code shows a password form; the right password joins. The password
    goes in the connection's first message, never in its URL (where proxies and logs would keep it)."""
    created = (
        await client.post(
            "/api/training/sessions", json={"training_id": "guarded", "room": {"password_protected": True}}
        )
    ).json()
    page = await browser.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.goto(f"{live.url}/sessions/{created['room_code']}")
    await page.wait_for_selector("#password-form.shown")
    await page.fill("#password", created["room_password"])
    await page.click("#password-form button")
    await page.wait_for_function("() => document.getElementById('title').textContent === 'guarded'")
    await page.wait_for_selector("#connection.connected")
    assert len(sockets) >= 2 and not [url for url in sockets if "password" in url or created["room_password"] in url]


async def test_list_tabs_search_sort_and_compare_selected(
    live: LiveServer, client: httpx.AsyncClient, browser: Any, tmp_path: Path
) -> None:
    """Running, ended and all as tabs with live counts (an ended run no longer vanishes by default), search by
    name, sort by episode, and "compare selected" opening /compare for the ticked runs; no sideways scroll
    at a phone's width."""
    running, ended, other = [await create_session(client, name) for name in ["cartpole-a", "cartpole-b", "pong"]]
    await client.put(f"/api/training/sessions/{running}", json={"status": "running"})
    await client.put(f"/api/training/sessions/{ended}", json={"status": "completed"})
    await push(client, ended, range(30))
    await push(client, other, range(10))
    page = await browser.new_page(viewport={"width": 375, "height": 800})
    await page.goto(live.url)
    rows = "() => [...document.querySelectorAll('#sessions tr[data-session]')].map(r => r.dataset.session)"
    await page.wait_for_function(f"() => ({rows})().length === 3")
    assert await page.text_content("#count-running") == "2" and await page.text_content("#count-ended") == "1"
    await page.click("[data-tab=ended]")
    await page.wait_for_function(f"() => ({rows})().join() === '{ended}'")
    await page.click("[data-tab=all]")
    await page.fill("#search", "cartpole")
    await page.wait_for_function(f"() => ({rows})().length === 2")
    await page.select_option("#sort", "episode")
    assert await page.evaluate(rows) == [ended, running]
    assert "q=cartpole" in page.url and "sort=episode" in page.url
    assert await page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    for session_id in (ended, running):
        await page.check(f"tr[data-session='{session_id}'] input")
    await snap(page, tmp_path, "list-page")
    await page.click("#compare")
    await page.wait_for_url(f"**/compare?sessions={ended},{running}")


async def test_list_shows_a_protected_room_without_its_details(
    live: LiveServer, client: httpx.AsyncClient, browser: Any
) -> None:
    """A protected room is listed (the list gives only its name, status and times): its row says it is
    protected, with no progress or spectator count, beside a whole open row, and the page throws nothing."""
    room = {"training_id": "vault", "name": "vault run", "total_episodes": 50, "room": {"password_protected": True}}
    assert (await client.post("/api/training/sessions", json=room)).status_code == 201
    await create_session(client, "open", name="open run", total_episodes=50)
    for session_id in ("vault", "open"):
        await push(client, session_id, range(10))
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(live.url)
    await page.wait_for_selector("tr[data-session='vault'][data-protected]")
    await page.wait_for_selector("tr[data-session='open'] progress")
    cells = "tr => [...tr.cells].slice(1, 6).map(c => c.textContent.trim())"
    assert await page.eval_on_selector("tr[data-session='vault']", cells) == [
        "vault run",
        "created",
        "",
        "🔒 protected",
        "–",
    ]
    assert (await page.eval_on_selector("tr[data-session='open']", cells))[3] == "9/50"
    await page.select_option("#sort", "episode")
    await page.fill("#search", "run")
    await page.wait_for_function("() => document.querySelectorAll('#sessions tr[data-session]').length === 2")
    assert errors == []


async def test_compare_overlays_runs_with_the_view_controls_and_marks_config_differences(
    live: LiveServer, client: httpx.AsyncClient, browser: Any, tmp_path: Path
) -> None:
    """Two runs of one metric on one chart, live, with smoothing (the URL keeps it), then of a second metric
    on a chart of its own; their configurations side by side, the values that differ marked, and a switch
    to show only those."""
    first = await create_session(client, "run-a", name="A", algorithm="DQN", metadata={"lr": 0.001, "gamma": 0.99})
    second = await create_session(client, "run-b", name="B", algorithm="DQN", metadata={"lr": 0.01, "gamma": 0.99})
    await push(client, first, range(50))
    await push(client, second, range(80))
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{live.url}/compare?sessions={first},{second}&metric=current_reward&smoothing=0.5")
    points = "(id) => window.comparePage.chart()?.series.get(id)?.value.length"
    await page.wait_for_function(f"() => ({points})('{first}') === 50 && ({points})('{second}') === 80")
    await push(client, second, range(80, 90))
    await page.wait_for_function(f"() => ({points})('{second}') === 90")
    assert await page.evaluate("() => window.comparePage.chart().plot.data.length") == 5  # x, 2 × (raw, smoothed)
    assert await page.input_value("#smoothing") == "0.5"
    differing = await page.eval_on_selector_all("#config tr.differs", "rows => rows.map(r => r.dataset.key)")
    assert "metadata.lr" in differing and "name" in differing and "metadata.gamma" not in differing
    await page.check("#only-differences")
    shown = await page.eval_on_selector_all("#config tr[data-key]", "rows => rows.map(r => r.dataset.key)")
    assert "metadata.gamma" not in shown and "algorithm" not in shown and "metadata.lr" in shown
    await page.check("#metrics input[value=loss_value]")  # several metrics overlaid, a chart each
    loss = "(id) => window.comparePage.chart('loss_value')?.series.get(id)?.value.length"
    await page.wait_for_function(f"() => ({loss})('{first}') === 50 && ({points})('{second}') === 90")
    assert await page.evaluate("() => new URLSearchParams(location.search).getAll('metric')") == [
        "current_reward",
        "loss_value",
    ]
    await snap(page, tmp_path, "compare-page")


async def locked_server(server_factory: Any, settings: Any, session_id: str) -> tuple[LiveServer, str]:
    """A server with access control holding a session of 5 points, and a key with the read scope."""
    from tests.e2e.test_auth import SECRET, keys

    live = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    admin, reader = keys(settings.database_url, (["admin"], None), (["read"], None))
    async with httpx.AsyncClient(base_url=live.url, headers={"Authorization": f"Bearer {admin}"}) as client:
        await create_session(client, session_id)
        await push(client, session_id, range(5))
    return live, reader


async def test_with_auth_on_the_page_asks_for_a_key_once(server_factory: Any, settings: Any, browser: Any) -> None:
    """A server with access control: the session page asks for an API key (never in a URL), then shows the
    session live; the key is kept for the tab, so a reload asks no more."""
    live, reader = await locked_server(server_factory, settings, "locked")
    asked: list[str] = []

    async def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.accept(reader)

    page = await browser.new_page()
    page.on("dialog", answer)
    await page.goto(f"{live.url}/sessions/locked")
    await page.wait_for_function("() => document.getElementById('title').textContent === 'locked'")
    assert len(asked) == 1 and "API key" in asked[0]
    assert reader not in page.url
    await page.reload()
    await page.wait_for_selector("#connection.connected")
    assert len(asked) == 1


async def test_a_declined_key_prompt_is_not_asked_again(server_factory: Any, settings: Any, browser: Any) -> None:
    """Cancelled, the prompt does not come back for each read the page then makes (it did about 9 times in
    3.5 s): the page says what it could not read and waits."""
    live, _ = await locked_server(server_factory, settings, "declined")
    asked: list[str] = []

    async def decline(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    for path in ("/", "/sessions/declined"):  # the list refreshes every few seconds, each a refused read
        page = await browser.new_page()
        page.on("dialog", decline)
        await page.goto(f"{live.url}{path}")
        await page.wait_for_timeout(4000)  # the page's reads and reconnects that would each have asked
        assert len(asked) == 1, (path, asked)
        banner = await page.eval_on_selector("#banner", "b => [b.classList.contains('shown'), b.textContent]")
        assert banner[0] and "API key" in banner[1], (path, banner)  # said, not an empty list
        asked.clear()
        await page.close()


async def test_numbers_read_whole(live: LiveServer, browser: Any) -> None:
    """The run panel's numbers keep their whole part exact (1,234,567 read "1,234,600")."""
    page = await browser.new_page()
    await page.goto(f"{live.url}/compare")  # any page with app.js
    shown = await page.evaluate(
        "() => [1234567, 59999.5, 30000, -45000, 12.3456789, 0.00123456, 1.5e9, 0].map(TMS.formatNumber)"
    )
    assert shown == ["1,234,567", "59,999.5", "30,000", "-45,000", "12.346", "0.0012346", "1.5e+9", "0"], shown


async def cut_off(live: LiveServer, browser: Any) -> tuple[Any, list[str]]:
    """A page that reaches this server alone: what it asks of any other site is refused, and listed."""
    page = await browser.new_page()
    elsewhere: list[str] = []

    async def only_this_server(route: Any) -> None:
        if route.request.url.startswith(live.url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_this_server)
    return page, elsewhere


async def test_docs_render_with_no_other_site_reachable(live: LiveServer, browser: Any) -> None:
    """/docs (Swagger UI) renders the API from this server alone: every request to another site is refused."""
    page, elsewhere = await cut_off(live, browser)
    await page.goto(f"{live.url}/docs")
    await page.wait_for_selector(".swagger-ui .info .title")
    await page.wait_for_selector('.opblock-summary-path[data-path="/api/training/sessions/{session_id}/metrics"]')
    assert "Training Metrics Server" in await page.inner_text(".swagger-ui .info .title")
    assert not elsewhere, elsewhere


async def test_redoc_renders_with_no_other_site_reachable(live: LiveServer, browser: Any) -> None:
    """/redoc (ReDoc) as /docs: FastAPI's loads its script from a CDN and its fonts from Google, so offline
    it was a blank page; from this server alone it renders the API. ReDoc's own bundle asks for its maker's
    logo, which offline is simply not drawn."""
    page, elsewhere = await cut_off(live, browser)
    await page.goto(f"{live.url}/redoc")
    await page.wait_for_selector("h1:has-text('Training Metrics Server')")
    await page.wait_for_selector("text='/api/training/sessions/{session_id}/metrics'", state="attached")
    # The only other site it names: the "API docs by Redocly" logo in its menu's foot, an image, drawn without.
    assert set(elsewhere) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, elsewhere
