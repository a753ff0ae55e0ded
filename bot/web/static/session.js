// One session, live: charts backfilled from downsampled history, then extended by the WebSocket stream.
"use strict";
const key = decodeURIComponent(location.pathname.split("/").pop());
const GROUPS = [["Reward", ["current_reward", "average_reward"]], ["Loss", ["loss_value"]], ["Epsilon", ["epsilon"]], ["Win rate (%)", ["win_rate"]]];
const BUILT_IN = new Set(GROUPS.flatMap(([, metrics]) => metrics));
const charts = new Map(); // title -> { chart, metrics }
let sessionId = null, totalEpisodes = null, spectator = null;
let backfilled = false, backfillSeq = 0;
const early = []; // live messages that arrived before the backfill

const $ = (id) => document.getElementById(id);

function setStatus(status) { const el = $("status"); el.textContent = status; el.className = `pill ${status}`; }
function setEpisode(episode) {
  if (episode === undefined || episode === null) return;
  $("episode").textContent = totalEpisodes ? `${episode} / ${totalEpisodes}` : episode;
  if (totalEpisodes) { const bar = $("progress"); bar.hidden = false; bar.max = totalEpisodes; bar.value = episode; }
}

function addChart(title, metrics) {
  const box = document.createElement("div");
  box.className = "panel chart"; box.dataset.chart = title;
  $("charts").append(box);
  const entry = { chart: new TMS.LiveChart(box, title, metrics), metrics, box };
  charts.set(title, entry);
  return entry;
}

async function backfill(entry) {
  const params = new URLSearchParams({ points: 1000 }); // a chart is about 1,000 px wide
  entry.metrics.forEach((m) => params.append("metric", m));
  // A protected room's history needs its password too, as its live stream does.
  const headers = spectator?.password ? { "X-Room-Password": spectator.password } : {};
  const body = await TMS.api(`/api/training/sessions/${encodeURIComponent(sessionId)}/series?${params}`, headers);
  // x is the episode, unless some point has none or episodes go backwards (an engine restarted its
  // count): then the seq, which always increases.
  const byEpisode = entry.metrics.every((m) => body.series[m].episode.every((e, i, all) => e !== null && (i === 0 || e >= all[i - 1])));
  entry.x = byEpisode ? "episode" : "seq";
  const tables = entry.metrics.map((m) => {
    const s = body.series[m];
    return [byEpisode ? s.episode : s.seq, s.value.map(TMS.plain)];
  });
  entry.chart.load(tables.length === 1 ? tables[0] : uPlot.join(tables));
  return body;
}

function picker(available) {
  const custom = available.filter((m) => !BUILT_IN.has(m));
  $("picker").replaceChildren(...[...GROUPS.map(([title]) => title), ...custom].map((name) => {
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: charts.has(name), value: name });
    box.onchange = async () => {
      if (box.checked) await backfill(addChart(name, GROUPS.find(([t]) => t === name)?.[1] ?? [name]));
      else { charts.get(name)?.box.remove(); charts.delete(name); }
    };
    label.append(box, ` ${name}`);
    return label;
  }));
}

async function start(snapshot) {
  sessionId = snapshot.session.session_id;
  totalEpisodes = snapshot.session.total_episodes;
  $("title").textContent = snapshot.session.name || sessionId;
  document.title = `${snapshot.session.name || sessionId} · Training Metrics Server`;
  setStatus(snapshot.session.status);
  setEpisode(snapshot.session.current_episode);
  if (snapshot.latest_decision) onDecision(snapshot.latest_decision);
  if (backfilled) return;
  GROUPS.forEach(([title, metrics]) => addChart(title, metrics));
  const results = await Promise.all([...charts.values()].map(backfill));
  backfillSeq = results[0].last_seq;
  picker(results[0].available);
  backfilled = true;
  early.splice(0).forEach(handle);
}

function onMetrics(message) {
  const data = message.data;
  for (const { chart, metrics, x } of charts.values()) {
    const values = metrics.map((m) => data[m] ?? data.custom?.[m] ?? null);
    if (values.some((v) => v !== null)) chart.append(x === "seq" ? message.seq : data.episode ?? message.seq, values);
  }
  setEpisode(data.episode);
}

function onDecision(data) {
  $("decision-empty").hidden = true; $("decision").hidden = false;
  $("chosen").textContent = data.selected_action ?? "–";
  $("confidence").textContent = data.confidence_score !== undefined ? `${(100 * data.confidence_score).toFixed(1)} %` : "–";
  $("q-values").textContent = data.q_values ? data.q_values.map((q) => (typeof q === "number" ? q.toFixed(3) : q)).join(", ") : "–";
  const bars = Object.entries(data.action_probabilities || {}).map(([action, p]) => {
    const bar = document.createElement("div");
    bar.className = `bar${String(action) === String(data.selected_action) ? " selected" : ""}`;
    bar.dataset.action = action; bar.dataset.probability = p;
    bar.innerHTML = `<span class="name"></span><span class="track"><span class="fill" style="width:${(100 * p).toFixed(1)}%"></span></span><span>${(100 * p).toFixed(1)}%</span>`;
    bar.querySelector(".name").textContent = action;
    return bar;
  });
  $("probabilities").replaceChildren(...bars);
}

function handle(message) {
  if (!backfilled && message.seq) { early.push(message); return; }
  if (message.seq && message.seq <= backfillSeq && message.type === "training_metrics") return; // already in the backfill
  switch (message.type) {
    case "snapshot": start(message.data).catch((e) => TMS.showProblem(`Could not load history: ${e.message}`)); break;
    case "connection_status": $("spectators").textContent = message.data.spectator_count; break;
    case "training_metrics": onMetrics(message); break;
    case "bot_decision": onDecision(message.data); break;
    case "training_status": setStatus(message.data.status); break;
    case "reset": backfilled = false; for (const { box } of charts.values()) box.remove(); charts.clear(); break;
    case "lag": TMS.showProblem(`Fell behind: ${message.data.dropped} live messages skipped; refresh to reload them.`); break;
  }
}

function connect(password) {
  spectator = new TMS.Spectator(key, {
    password,
    onMessage: handle,
    onState: (state, event) => {
      const el = $("connection"); el.textContent = state; el.className = `pill ${state}`;
      if (state === "disconnected" && event?.code === 4403) { $("password-form").classList.add("shown"); TMS.showProblem(event.reason || "This room needs a password."); }
      if (state === "disconnected" && event?.code === 4404) TMS.showProblem(`No session or room called "${key}".`);
      if (state === "disconnected" && event?.code === 4410) TMS.showProblem("This session was deleted.");
      if (state === "disconnected" && event?.code === 4429) TMS.showProblem(event.reason || "This session is full.");
    },
  });
}

$("password-form").onsubmit = (event) => {
  event.preventDefault();
  $("password-form").classList.remove("shown"); TMS.clearProblem();
  spectator.close(); connect($("password").value);
};
connect(null);
window.sessionPage = { charts }; // for tests and the curious
