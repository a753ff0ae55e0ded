// Training from the list page, as the original design's UI had it: start a job (the form takes what
// POST /api/training/start takes, scenarios listed by the server), the jobs with live progress and a stop, and
// the daemon: its configuration (editable), its state and its recent runs. A credential without the `admin`
// scope for the whole server sees the jobs and the daemon but no control; one that cannot read them, nothing.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let canControl = false;

  // A request that changes something: JSON, with the key where there is one; the server's error said in
  // `where` (a 422 names each bad field).
  async function send(method, path, body, where) {
    where.textContent = "";
    const headers = { Accept: "application/json", ...TMS.authHeaders(), ...(body ? { "Content-Type": "application/json" } : {}) };
    const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = Array.isArray(answer.detail) ? answer.detail.map((d) => `${d.loc.at(-1)}: ${d.msg}`).join("; ") : answer.detail;
      where.textContent = detail || `${response.status} ${response.statusText}`;
      throw new Error(where.textContent);
    }
    return answer;
  }

  function fill(select, names, chosen) {
    select.replaceChildren(...names.map((name) => Object.assign(document.createElement("option"), { value: name, textContent: name, selected: name === chosen })));
  }

  async function setUp() {
    let body;
    try { body = await TMS.api("/api/training/scenarios"); } catch { return; } // no training here for this credential
    canControl = body.can_control;
    $("training").hidden = false;
    document.querySelectorAll("#training .control").forEach((el) => { el.hidden = !canControl; });
    document.querySelectorAll("#daemon-form input, #daemon-form select").forEach((el) => { el.disabled = !canControl; });
    fill($("train-scenario"), body.scenarios);
    for (const [name, value] of Object.entries(body.defaults)) $(`train-${name}`).value = value;
    fill($("daemon-scenario"), body.scenarios);
    await refresh();
    setInterval(() => { if (!document.hidden) refresh().catch(() => {}); }, 2000);
  }

  $("train-form").onsubmit = async (event) => {
    event.preventDefault();
    const number = (id) => ($(id).value === "" ? undefined : Number($(id).value));
    const body = {
      scenario_name: $("train-scenario").value,
      num_episodes: number("train-num_episodes"),
      save_interval: number("train-save_interval"),
      eval_episodes: number("train-eval_episodes"),
      seed: number("train-seed"),
    };
    const answer = await send("POST", "/api/training/start", body, $("train-error")).catch(() => null);
    if (answer) location.href = `/sessions/${encodeURIComponent(answer.data.session_id)}`; // watch it train
  };

  function jobRow(job) {
    const tr = document.createElement("tr");
    tr.dataset.job = job.job_id; tr.dataset.status = job.status;
    const done = job.episodes_completed ?? 0, total = job.total_episodes;
    tr.innerHTML = `<td><a></a></td><td class="scenario"></td><td><span class="pill ${job.status}">${job.status}</span></td>
      <td><progress max="${total}" value="${done}"></progress> ${done}/${total}</td><td class="muted">${new Date(job.start_time).toLocaleString()}</td><td></td>`;
    Object.assign(tr.querySelector("a"), { href: `/sessions/${encodeURIComponent(job.session_id)}`, textContent: job.job_id });
    tr.querySelector(".scenario").textContent = job.scenario_name;
    if (canControl && (job.status === "running" || job.status === "stopping")) {
      const stop = Object.assign(document.createElement("button"), { type: "button", textContent: "Stop", className: "stop" });
      stop.onclick = async () => {
        stop.disabled = true;
        await send("POST", "/api/training/stop", { job_id: job.job_id }, $("jobs-error")).catch(() => { stop.disabled = false; });
        refresh().catch(() => {});
      };
      tr.lastElementChild.append(stop);
    }
    return tr;
  }

  function showDaemon(summary) {
    const daemon = summary.daemon || {};
    $("daemon-state").textContent = daemon.state ?? (summary.enabled ? "idle" : "disabled");
    $("daemon-state").className = `pill ${daemon.state === "training" ? "running" : ""}`;
    $("daemon-facts").textContent = `${summary.total_runs} runs, ${Math.round(100 * summary.success_rate)} % succeeded` +
      (summary.last_error ? ` · last error: ${summary.last_error}` : "");
    const form = $("daemon-form");
    if (!form.contains(document.activeElement)) { // not while someone edits it
      $("daemon-enabled").checked = summary.enabled;
      $("daemon-interval").value = summary.interval_minutes;
      $("daemon-episodes").value = summary.episodes_per_run;
      if (daemon.scenario) $("daemon-scenario").value = daemon.scenario;
    }
    $("daemon-runs").replaceChildren(...(summary.recent_runs || []).map((run) => {
      const li = document.createElement("li");
      li.dataset.status = run.status;
      li.textContent = `${new Date(run.timestamp).toLocaleString()} · ${run.trigger} · ${run.status} · ${run.scenario}, ` +
        `${run.episodes} episodes${run.final_reward !== null ? ` · final reward ${run.final_reward}` : ""}${run.error ? ` · ${run.error}` : ""}`;
      return li;
    }));
  }

  async function refresh() {
    const [{ jobs }, summary] = await Promise.all([TMS.api("/api/training/jobs?limit=10"), TMS.api("/api/training/summary")]);
    const empty = Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="6" class="muted">No training job yet.</td>' });
    $("jobs").replaceChildren(...(jobs.length ? jobs.map(jobRow) : [empty]));
    showDaemon(summary);
  }

  $("daemon-form").onsubmit = async (event) => {
    event.preventDefault();
    const body = {
      enabled: $("daemon-enabled").checked,
      interval_minutes: Number($("daemon-interval").value),
      episodes_per_run: Number($("daemon-episodes").value),
      scenario: $("daemon-scenario").value,
    };
    await send("PUT", "/api/training/daemon/config", body, $("daemon-error")).catch(() => null);
    document.activeElement?.blur();
    refresh().catch(() => {});
  };
  $("daemon-run").onclick = async () => {
    await send("POST", "/api/training/daemon/run", null, $("daemon-error")).catch(() => null);
    refresh().catch(() => {});
  };

  setUp();
  window.trainingPanel = { refresh };
})();
