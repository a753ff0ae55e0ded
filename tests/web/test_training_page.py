"""Training from the page (#27.10), in a real browser against a real server that runs real jobs: the form
starts a job and lands on its session, the list shows it with live progress and stops it, the daemon panel
shows and changes the daemon's configuration and runs it; without the scope, no control is shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from tests.conftest import TIMEOUT
from tests.web.conftest import BROWSER_TESTS, snap

pytestmark = BROWSER_TESTS
JOB_TIMEOUT = TIMEOUT * 6  # a job's process imports torch before its first episode


async def test_start_watch_and_stop_a_job_and_drive_the_daemon_from_the_page(
    server_factory: Any, settings: Settings, browser: Any, tmp_path: Path
) -> None:
    live = await server_factory(
        settings.model_copy(update={"models_dir": tmp_path / "models", "training_daemon_tick": 0.1})
    )
    page = await browser.new_page(viewport={"width": 1200, "height": 1200})
    await page.goto(live.url)
    await page.wait_for_selector("#train-form:not([hidden]) #train-scenario option[value=mock_cache]", state="attached")
    assert await page.input_value("#train-num_episodes") == "1000"  # the server's defaults
    await page.select_option("#train-scenario", "mock_cache")
    await page.fill("#train-num_episodes", "100000")
    await page.fill("#train-seed", "3")
    await snap(page, tmp_path, "training-form")
    await page.click("#train-start")
    await page.wait_for_url("**/sessions/train-mock_cache-*", timeout=TIMEOUT * 1000)
    session_id = page.url.rsplit("/", 1)[1]
    await page.wait_for_function(
        "() => window.sessionPage.charts.get('Reward')?.chart.points() > 0", timeout=JOB_TIMEOUT * 1000
    )

    await page.goto(live.url)
    row = f"#jobs tr[data-status=running]:has(a[href='/sessions/{session_id}'])"
    await page.wait_for_selector(row)
    assert "100000" in (await page.text_content(row) or "")
    # the same scenario again, while it runs: refused, said on the form, nothing started
    await page.fill("#train-num_episodes", "5")
    await page.click("#train-start")
    await page.wait_for_function("() => document.getElementById('train-error').textContent !== ''")
    assert "stop one first" in (await page.text_content("#train-error") or "")
    async with httpx.AsyncClient(base_url=live.url) as client:
        assert len((await client.get("/api/training/jobs")).json()["jobs"]) == 1
    await page.click(f"{row} button.stop")
    await page.wait_for_selector(
        f"#jobs tr[data-status=stopped]:has(a[href='/sessions/{session_id}'])", timeout=JOB_TIMEOUT * 1000
    )

    # the daemon: a run now (disabled, it runs only when told), then its configuration changed from the panel
    assert await page.text_content("#daemon-state") == "disabled"
    await page.click("#daemon-run")
    run = "#daemon-runs li[data-status=succeeded]"
    await page.wait_for_selector(run, timeout=JOB_TIMEOUT * 1000)
    assert " · manual · " in (await page.text_content(run) or "")
    await page.fill("#daemon-interval", "45")
    await page.fill("#daemon-episodes", "2")
    await page.click("#daemon-save")
    await page.wait_for_function("() => document.getElementById('daemon-interval').value === '45'")
    async with httpx.AsyncClient(base_url=live.url) as client:
        config = (await client.get("/api/training/daemon/config")).json()
    assert (config["enabled"], config["interval_minutes"], config["episodes_per_run"]) == (False, 45, 2), config
    await page.fill("#daemon-interval", "0")  # below the least: the server's answer says so, nothing changes
    await page.eval_on_selector("#daemon-interval", "input => input.removeAttribute('min')")
    await page.click("#daemon-save")
    await page.wait_for_function(
        "() => document.getElementById('daemon-error').textContent.includes('interval_minutes')"
    )
    async with httpx.AsyncClient(base_url=live.url) as client:
        assert (await client.get("/api/training/daemon/config")).json()["interval_minutes"] == 45
    await page.fill("#daemon-interval", "45")
    await page.check("#daemon-enabled")
    await page.click("#daemon-save")
    await page.wait_for_function("() => document.getElementById('daemon-state').textContent !== 'disabled'")
    await snap(page, tmp_path, "daemon-panel")


async def test_with_auth_the_controls_need_the_admin_scope(
    server_factory: Any, settings: Settings, browser: Any
) -> None:
    """A read key sees the jobs and the daemon, no form, no stop, no save; an admin key sees them all."""
    from tests.e2e.test_auth import SECRET, keys

    live = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    admin, reader = keys(settings.database_url, (["admin"], None), (["read"], None))
    for key, controls in ((reader, False), (admin, True)):
        page = await browser.new_page()
        page.on("dialog", lambda dialog, key=key: dialog.accept(key))
        await page.goto(live.url)
        await page.wait_for_selector("#training:not([hidden])")
        await page.wait_for_selector("#daemon-state:not(:text('…'))")
        assert await page.is_visible("#train-form") is controls
        assert await page.is_visible("#daemon-save") is controls and await page.is_visible("#daemon-run") is controls
        assert await page.is_disabled("#daemon-interval") is not controls
        await page.close()
