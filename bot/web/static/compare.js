// 2 to 10 runs: the chosen metrics overlaid, a chart each, live, with the session page's smoothing, scales, x axis and zoom; and
// their configurations side by side, the values that differ marked.
"use strict";
const params = new URLSearchParams(location.search);
const ids = [...new Set((params.get("sessions") || "").split(",").map((s) => s.trim()).filter(Boolean))];
let metrics = params.getAll("metric").length ? [...new Set(params.getAll("metric"))] : ["current_reward"];
let charts = new Map(), sockets = [], sessions = [];
const $ = (id) => document.getElementById(id);
const path = (id, rest = "") => `/api/training/sessions/${encodeURIComponent(id)}${rest && `/${rest}`}`;
const seconds = (iso) => Date.parse(iso) / 1000;

// A chart per chosen metric, each overlaying the runs; backfilled, then live.
async function load() {
  sockets.forEach((s) => s.close());
  charts.forEach((chart) => chart.destroy());
  charts = new Map();
  $("charts").replaceChildren();
  for (const metric of metrics) {
    const box = Object.assign(document.createElement("div"), { className: "panel chart" });
    box.dataset.chart = metric;
    $("charts").append(box);
    charts.set(metric, new TMS.RunChart(box, metric, []));
  }
  const query = new URLSearchParams({ points: 1000 });
  metrics.forEach((m) => query.append("metric", m));
  const bodies = await Promise.all(ids.map((id) => TMS.api(path(id, `series?${query}`))));
  bodies.forEach((body, i) => {
    for (const [metric, chart] of charts) {
      const s = body.series[metric];
      if (!s?.value.length) continue;
      chart.labels.set(ids[i], runLabel(i));
      chart.add(ids[i], seconds(sessions[i].created_at));
      chart.load(ids[i], { seq: s.seq, episode: s.episode, step: s.step, time: s.timestamp, value: s.value });
    }
  });
  picker([...new Set(bodies.flatMap((b) => b.available))].filter((m) => m !== "total_episodes").sort()); // a length, not a curve
  sockets = ids.map((id, i) => {
    let last = bodies[i].last_seq;
    return new TMS.Spectator(id, {
      types: ["training_metrics"], since: last, epoch: bodies[i].epoch,
      onMessage: (message) => {
        if (message.type !== "training_metrics" || message.seq <= last) return;
        last = message.seq;
        const data = message.data, time = seconds(data.timestamp ?? message.timestamp);
        for (const [metric, chart] of charts) {
          const value = data[metric] ?? data.custom?.[metric];
          if (value === undefined || value === null) continue;
          chart.labels.set(id, runLabel(i));
          chart.add(id, seconds(sessions[i].created_at));
          chart.append(id, message.seq, data.episode, time, value, data.step);
        }
      },
    });
  });
}

// The metrics to overlay, any number of them; kept in the URL (`metric=a&metric=b`).
function picker(available) {
  $("metrics").replaceChildren(...available.map((name) => {
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: name, checked: metrics.includes(name) });
    box.onchange = () => {
      metrics = box.checked ? [...metrics, name] : metrics.filter((m) => m !== name);
      const query = new URLSearchParams(location.search);
      query.delete("metric");
      metrics.forEach((m) => query.append("metric", m));
      history.replaceState(null, "", `?${query}`);
      load().catch((e) => TMS.showProblem(e.message));
    };
    label.append(box, ` ${name}`);
    return label;
  }));
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
    for (const key of ["name", "status", "algorithm", "model_generation", "total_episodes"]) put(key, i, s[key] === null ? "" : String(s[key] ?? ""));
    const done = TMS.episodesDone(s.current_episode, s.total_episodes, s.status); // 300 of 300, not 299
    put("current_episode", i, done === null || done === undefined ? "" : String(done));
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

$("only-differences").onchange = configTable;
TMS.viewControls($("view"));
if (ids.length < 2 || ids.length > 10) TMS.showProblem("Compare 2 to 10 runs: tick them on the session list (or add ?sessions=a,b to the address).");
else start().catch((e) => TMS.showProblem(`Could not load: ${e.message}`));
window.comparePage = { chart: (metric = metrics[0]) => charts.get(metric), charts: () => charts, ids };
