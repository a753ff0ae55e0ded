// 2 to 10 runs: one metric overlaid, live, with the session page's smoothing, scales, x axis and zoom; and
// their configurations side by side, the values that differ marked.
"use strict";
const params = new URLSearchParams(location.search);
const ids = [...new Set((params.get("sessions") || "").split(",").map((s) => s.trim()).filter(Boolean))];
let metric = params.get("metric") || "current_reward";
let chart = null, sockets = [], sessions = [];
const $ = (id) => document.getElementById(id);
const path = (id, rest = "") => `/api/training/sessions/${encodeURIComponent(id)}${rest && `/${rest}`}`;
const seconds = (iso) => Date.parse(iso) / 1000;

async function load() {
  sockets.forEach((s) => s.close());
  chart?.destroy();
  const box = document.createElement("div");
  box.className = "panel chart";
  $("charts").replaceChildren(box);
  chart = new TMS.RunChart(box, metric, []);
  const bodies = await Promise.all(ids.map((id) => TMS.api(path(id, `series?metric=${encodeURIComponent(metric)}&points=1000`))));
  bodies.forEach((body, i) => {
    const s = body.series[metric];
    chart.labels.set(ids[i], runLabel(i));
    chart.add(ids[i], seconds(sessions[i].created_at));
    chart.load(ids[i], { seq: s.seq, episode: s.episode, step: s.step, time: s.timestamp, value: s.value });
  });
  const available = [...new Set(bodies.flatMap((b) => b.available))].sort();
  $("metric").replaceChildren(...available.map((m) => Object.assign(document.createElement("option"), { value: m, textContent: m, selected: m === metric })));
  sockets = ids.map((id, i) => {
    let last = bodies[i].last_seq;
    return new TMS.Spectator(id, {
      types: ["training_metrics"], since: last, epoch: bodies[i].epoch,
      onMessage: (message) => {
        if (message.type !== "training_metrics" || message.seq <= last) return;
        last = message.seq;
        const value = message.data[metric] ?? message.data.custom?.[metric];
        const time = seconds(message.data.timestamp ?? message.timestamp);
        if (value !== undefined && value !== null) chart.append(id, message.seq, message.data.episode, time, value, message.data.step);
      },
    });
  });
}

// A run by its name; by its id where it has none, or where another compared run has the same name.
function runLabel(i) {
  const name = sessions[i].name;
  return name && sessions.filter((s) => s.name === name).length === 1 ? name : ids[i];
}

// Each run's facts and flattened metadata, a row per key; a row whose values are not all equal is marked.
function configTable() {
  const rows = new Map();
  const put = (key, i, value) => { if (!rows.has(key)) rows.set(key, ids.map(() => "")); rows.get(key)[i] = value ?? ""; };
  sessions.forEach((s, i) => {
    for (const key of ["name", "status", "algorithm", "model_generation", "total_episodes", "current_episode"]) put(key, i, s[key] === null ? "" : String(s[key] ?? ""));
    TMS.flatten(s.metadata || {}).forEach(([key, value]) => put(`metadata.${key}`, i, value));
  });
  const head = document.createElement("tr");
  head.append(document.createElement("th"), ...ids.map((id, i) => Object.assign(document.createElement("th"), { textContent: runLabel(i), title: id })));
  const onlyDiffering = $("only-differences").checked;
  const body = [...rows].filter(([, values]) => !onlyDiffering || new Set(values).size > 1).map(([key, values]) => {
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    if (new Set(values).size > 1) tr.className = "differs";
    tr.append(Object.assign(document.createElement("th"), { textContent: key }), ...values.map((v) => Object.assign(document.createElement("td"), { textContent: v })));
    return tr;
  });
  $("config").replaceChildren(head, ...body);
}

async function start() {
  sessions = await Promise.all(ids.map((id) => TMS.api(path(id))));
  configTable();
  await load();
}

$("metric").onchange = (event) => {
  metric = event.target.value;
  const query = new URLSearchParams(location.search);
  query.set("metric", metric);
  history.replaceState(null, "", `?${query}`);
  load().catch((e) => TMS.showProblem(e.message));
};
$("only-differences").onchange = configTable;
TMS.viewControls($("view"));
if (ids.length < 2 || ids.length > 10) TMS.showProblem("Compare 2 to 10 runs: tick them on the session list (or add ?sessions=a,b to the address).");
else start().catch((e) => TMS.showProblem(`Could not load: ${e.message}`));
window.comparePage = { chart: () => chart, ids };
