// One session, live: charts backfilled from downsampled history, then extended by the WebSocket stream; the
// session's graph_update graphs too. Only charts with data are shown. Controls: charts.js.
"use strict";
const key = decodeURIComponent(location.pathname.split("/").pop());
const GROUPS = window.SESSION_GROUPS; // session-start.js
const BUILT_IN = new Set(GROUPS.flatMap(([, metrics]) => metrics));
// Not a curve: the run's length, which the header's progress bar shows.
const NOT_CHARTED = new Set(["total_episodes"]);
const charts = new Map(); // title (or "graph:<id>") -> { chart, metrics, box }
let sessionId = null, totalEpisodes = null, spectator = null, origin = 0;
let backfilled = false, backfillSeq = 0;
let known = null; // every metric the run has logged: the history's, then each new one as it arrives
const unticked = new Set(); // charts the spectator took off: new points do not bring them back
const early = []; // live messages that arrived before the backfill

const $ = (id) => document.getElementById(id);
const seconds = (iso) => Date.parse(iso) / 1000;

let runStatus = null, lastEpisode = null;
function setStatus(status) {
  const el = $("status"); el.textContent = status; el.className = `pill ${status}`;
  runStatus = status; setEpisode(lastEpisode);
}
function setEpisode(episode) {
  if (episode === undefined || episode === null) return;
  lastEpisode = episode;
  const done = TMS.episodesDone(episode, totalEpisodes, runStatus);
  $("episode").textContent = totalEpisodes ? `${done} / ${totalEpisodes}` : episode;
  if (totalEpisodes) { const bar = $("progress"); bar.hidden = false; bar.max = totalEpisodes; bar.value = done; }
}

const exportPath = (query) => `/api/training/sessions/${encodeURIComponent(sessionId)}/export?${query}`;
const exportTo = (query) => TMS.download(exportPath(query), roomHeaders()).catch((e) => TMS.showProblem(e.message));

function addChart(name, title, metrics, yLabel = "") {
  const box = document.createElement("div");
  box.className = "panel chart"; box.dataset.chart = name;
  // This chart's points: its metrics as CSV, or a graph's updates as JSON.
  const save = Object.assign(document.createElement("button"), { type: "button", className: "save", textContent: "Export", title: "download this chart's data" });
  save.onclick = () => {
    const graph = name.startsWith("graph:");
    const query = new URLSearchParams(graph ? { type: "graph_update" } : { format: "csv" });
    if (!graph) [...entry.chart.series.keys()].forEach((m) => query.append("metric", m));
    exportTo(query);
  };
  box.append(save);
  $("charts").append(box);
  // The chart's series come with their first points: a metric of the group with no data is not drawn.
  const entry = { chart: new TMS.RunChart(box, title, [], { yLabel, origin }), metrics, box };
  charts.set(name, entry);
  return entry;
}

const roomHeaders = () => (spectator?.password ? { "X-Room-Password": spectator.password } : {});

const seriesPath = window.seriesPath; // session-start.js

// A protected room's history needs its password too, as its live stream does.
const readSeries = (metrics, extra) => TMS.api(seriesPath(sessionId, metrics, extra), roomHeaders());

// The first chart's history, asked for by session-start.js as the page began to load.
const prefetched = window.SESSION_PREFETCH;

function fill(entry, body) {
  for (const m of entry.metrics) {
    const s = body.series[m];
    if (s?.value.length) entry.chart.load(m, { seq: s.seq, episode: s.episode, step: s.step, time: s.timestamp, value: s.value });
  }
}

async function showMetric(name, metrics) {
  const entry = addChart(name, name, metrics);
  fill(entry, await readSeries(metrics));
}

// The custom metrics picked are kept in the URL (`?metric=kl&metric=entropy`): a link or a reload shows them.
const pickedInUrl = () => new URLSearchParams(location.search).getAll("metric");
function rememberPicked(name, shown) {
  const params = new URLSearchParams(location.search);
  const names = params.getAll("metric").filter((m) => m !== name);
  params.delete("metric");
  (shown ? [...names, name] : names).forEach((m) => params.append("metric", m));
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
}

function picker(available) {
  const custom = available.filter((m) => !BUILT_IN.has(m) && !NOT_CHARTED.has(m));
  const wanted = pickedInUrl().filter((m) => custom.includes(m) && !charts.has(m));
  const shown = GROUPS.filter(([, metrics]) => metrics.some((m) => available.includes(m))).map(([title]) => title);
  $("picker").replaceChildren(...[...shown, ...custom].map((name) => {
    const label = document.createElement("label");
    const checked = charts.has(name) || wanted.includes(name);
    const box = Object.assign(document.createElement("input"), { type: "checkbox", checked, value: name });
    box.onchange = async () => {
      const group = GROUPS.find(([t]) => t === name);
      if (!group) rememberPicked(name, box.checked);
      if (!box.checked) { unticked.add(name); charts.get(name)?.chart.destroy(); charts.delete(name); return; }
      unticked.delete(name);
      if (!charts.has(name)) await showMetric(name, group?.[1] ?? [name]); // one chart a group, ever
    };
    label.append(box, ` ${name}`);
    return label;
  }));
  wanted.forEach((name) => showMetric(name, [name]).catch((e) => TMS.showProblem(`Could not load ${name}: ${e.message}`)));
}

// Where the run was (seq, episode, step) at each time, from its metrics: a graph point that does not say its
// step or episode takes the run's at its time, so that every chart follows the same x axis and zoom.
const timeline = { time: [], seq: [], episode: [], step: [] };
function mark(time, seq, episode, step) {
  if (time === null || time === undefined) return;
  const at = timeline.time.length;
  if (at && time < timeline.time[at - 1]) return; // kept in time order; a late point adds nothing new
  timeline.time.push(time); timeline.seq.push(seq); timeline.episode.push(episode ?? null); timeline.step.push(step ?? null);
}
function markSeries(s) { s.timestamp.forEach((t, i) => mark(t, s.seq[i], s.episode[i], s.step?.[i])); }
function runAt(time) {
  let low = 0, high = timeline.time.length; // the last mark at or before `time`
  while (low < high) { const mid = (low + high) >> 1; if (timeline.time[mid] <= time) low = mid + 1; else high = mid; }
  const i = Math.max(0, low - 1);
  return timeline.time.length ? { seq: timeline.seq[i], episode: timeline.episode[i], step: timeline.step[i] } : {};
}

function showGraph(graph, seq = null) {
  const name = `graph:${graph.graph_id}`;
  const entry = charts.get(name) ?? addChart(name, graph.title || graph.graph_id, [], graph.y_label || "");
  for (const [metric, points] of Object.entries(graph.data_points || {})) {
    for (const p of points) {
      const time = seconds(p.timestamp), run = runAt(time);
      entry.chart.append(metric, seq ?? run.seq, p.episode ?? run.episode, time, p.value, p.step ?? run.step);
    }
  }
}

function showRun(session) {
  const facts = [["algorithm", session.algorithm], ["generation", session.model_generation],
    ["episodes", session.total_episodes], ["created", new Date(session.created_at).toLocaleString()],
    ["ended", session.ended_at && new Date(session.ended_at).toLocaleString()]];
  $("facts").replaceChildren(...facts.filter(([, v]) => v !== null && v !== undefined).flatMap(([k, v]) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.textContent = v;
    return [dt, dd];
  }));
  const rows = TMS.flatten(session.metadata || {});
  $("config").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.append(Object.assign(document.createElement("th"), { textContent: k }), Object.assign(document.createElement("td"), { textContent: v }));
    return tr;
  }));
  $("config-box").hidden = !rows.length;
  showTags(session.tags);
}

// The run's tags: shown, removed (✕) and added (Enter) here; each change replaces them on the server.
let tags = [];
function showTags(list) {
  tags = list || [];
  const chips = tags.map((tag) => {
    const chip = Object.assign(document.createElement("span"), { className: "tag", textContent: tag });
    chip.dataset.tag = tag;
    const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "✕", title: `remove ${tag}` });
    remove.onclick = () => saveTags(tags.filter((t) => t !== tag));
    chip.append(" ", remove);
    return chip;
  });
  $("tags").replaceChildren(...chips, $("tag-input"));
}
async function saveTags(list) {
  const response = await fetch(`/api/training/sessions/${encodeURIComponent(sessionId)}`, {
    method: "PUT", headers: { "Content-Type": "application/json", ...TMS.authHeaders() }, body: JSON.stringify({ tags: list }),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(answer.detail) ? answer.detail.map((d) => d.msg).join("; ") : answer.detail;
    TMS.showProblem(`Tags not saved: ${detail || response.status}`);
    return;
  }
  TMS.clearProblem();
  showTags(answer.tags);
}
$("tag-input").onkeydown = (event) => {
  const tag = event.target.value.trim();
  if (event.key !== "Enter" || !tag) return;
  event.target.value = "";
  if (!tags.includes(tag)) saveTags([...tags, tag]);
};

const statusSeqs = new Set(); // a change read from history may also arrive live

function addStatus(seq, status, timestamp, message) {
  if (statusSeqs.has(seq)) return;
  statusSeqs.add(seq);
  const li = document.createElement("li");
  li.textContent = `${new Date(timestamp).toLocaleString()} · ${status}${message ? ` · ${message}` : ""}`;
  li.dataset.status = status; li.dataset.seq = seq;
  const later = [...$("statuses").children].find((other) => Number(other.dataset.seq) > seq);
  $("statuses").insertBefore(li, later ?? null);
}

async function loadStatuses() {
  const path = `/api/training/sessions/${encodeURIComponent(sessionId)}/history?type=training_status&limit=1000`;
  const page = await TMS.api(path, roomHeaders());
  page.messages.forEach((m) => addStatus(m.seq, m.data.status, m.timestamp, m.data.message));
}

// A metric is better low when its name says so (loss, error, regret, perplexity), else better high.
const LOWER_IS_BETTER = /loss|error|regret|perplexity/i;
const format = TMS.formatNumber;

async function loadSummary() {
  const path = `/api/training/sessions/${encodeURIComponent(sessionId)}/summary`;
  const { metrics } = await TMS.api(path, roomHeaders());
  const shown = Object.entries(metrics).filter(([name]) => !NOT_CHARTED.has(name));
  $("summary").replaceChildren(...shown.map(([name, m]) => {
    const tr = document.createElement("tr");
    tr.dataset.metric = name;
    const best = LOWER_IS_BETTER.test(name) ? m.min : m.max;
    const first = document.createElement("td"); // a narrow screen breaks "system/cpu_percent" after "/" or "_"
    name.split(/(?<=[/_])/).forEach((part, i) => first.append(...(i ? [document.createElement("wbr")] : []), part));
    tr.append(first);
    const points = m.count - (m.nan_count || 0); // as the charts: NaN is counted apart, not drawn
    [format(m.last), format(best), format(m.recent_mean), m.nan_count ? `${points} (+${m.nan_count} NaN)` : points].forEach((text) => {
      tr.append(Object.assign(document.createElement("td"), { textContent: text }));
    });
    return tr;
  }));
  $("summary-table").hidden = !shown.length;
}

// The policy over time (from all of history, in at most 200 buckets of at least MIN_DECISIONS decisions, so
// that a share means something): the share of each chosen action and the mean confidence, so that a
// spectator sees the policy change. It follows the page's x axis and zoom, placed by its decisions' times.
const MIN_DECISIONS = 20;
let policy = null, policyBody = null;

// The policy chart's x: the page's axis, with "step" resolved as the first chart resolves it (RunChart.axis).
const policyAxis = () => (TMS.view.x === "step" ? (charts.values().next().value?.chart.axis() ?? "seq") : TMS.view.x);

function policyX(bucket, axis) {
  const run = runAt(bucket.timestamp);
  if (axis === "wall") return bucket.timestamp;
  if (axis === "relative") return bucket.timestamp - origin;
  if (axis === "episode") return bucket.episode ?? run.episode ?? null;
  if (axis === "step") return run.step ?? null;
  return bucket.last_seq;
}

async function loadPolicy() {
  const path = `/api/training/sessions/${encodeURIComponent(sessionId)}/decisions?buckets=200&min_decisions=${MIN_DECISIONS}`;
  policyBody = await TMS.api(path, roomHeaders());
  drawPolicy();
}

function drawPolicy() {
  const body = policyBody;
  $("policy-panel").hidden = !body?.total;
  if (!body?.total) return;
  const axis = policyAxis(), x = (bucket) => policyX(bucket, axis);
  const buckets = body.buckets.filter((b) => x(b) !== null);
  const share = (action) => buckets.map((b) => (b.decisions ? (100 * (b.chosen[action] || 0)) / b.decisions : null));
  const columns = [buckets.map(x), ...body.actions.map(share),
    buckets.map((b) => (b.mean_confidence === null ? null : 100 * b.mean_confidence))];
  const labels = [...body.actions.map((a) => `chose ${a} (%)`), "mean confidence (%)"];
  const perPoint = Math.round(body.total / Math.max(1, body.buckets.length));
  const decisions = (n) => `${n.toLocaleString("en")} decision${n === 1 ? "" : "s"}`;
  const title = `${decisions(perPoint)} a point (${body.total.toLocaleString("en")} in all)`;
  const xLabel = charts.values().next().value?.chart.axisLabel() ?? TMS.X_AXES[TMS.view.x];
  const same = policy && policy.series[0].label === xLabel && policy.series.length === labels.length + 1 &&
    labels.every((label, i) => policy.series[i + 1].label === label);
  if (same) { // the next 5 s of the run: new data, not a new chart
    policy.root.querySelector(".u-title").textContent = title;
    policy.setData(columns, !TMS.view.zoom);
    policyRange();
    return;
  }
  policy?.destroy();
  const box = $("policy"), text = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim();
  const grid = getComputedStyle(document.documentElement).getPropertyValue("--grid").trim();
  policy = new uPlot({
    title, width: Math.max(260, box.clientWidth - 8), height: 220, padding: [null, TMS.X_PADDING, null, null],
    scales: { x: { time: TMS.view.x === "wall" }, y: { range: [0, 100] } },
    cursor: { sync: { key: "tms" } }, // the cursor moves on every chart (charts.js)
    axes: [{ stroke: text, grid: { stroke: grid }, label: xLabel, ...TMS.xAxis(TMS.view.x === "wall") }, { stroke: text, grid: { stroke: grid }, label: "%" }],
    series: [{ label: xLabel }, ...labels.map((label, i) => ({
      label, width: 1.5, stroke: i === labels.length - 1 ? text : TMS.COLOURS[i % TMS.COLOURS.length], dash: i === labels.length - 1 ? [5, 4] : undefined,
    }))],
  }, columns, box);
  policyRange();
}

// The policy chart spans what the other charts span (its buckets start at its first decision), or the zoom.
function policyRange() {
  const ref = charts.values().next().value?.chart.plot?.scales.x;
  const range = TMS.view.zoom ?? (ref && ref.min !== null && ref.max !== null ? [ref.min, ref.max] : null);
  if (range) policy.setScale("x", { min: range[0], max: range[1] });
}
new ResizeObserver(() => policy?.setSize({ width: Math.max(260, $("policy").clientWidth - 8), height: 220 })).observe($("policy"));

// The history is drawn as soon as it is here, whichever comes first: the prefetched series (the usual case:
// it was asked for from the page's <head>) or the join's snapshot. The snapshot then says whether what was
// drawn is still the session's (its epoch), and what was stored in between is read and appended.
let drawn = null; // the series body the charts were drawn from

function clearCharts() {
  for (const { chart } of charts.values()) chart.destroy();
  charts.clear(); drawn = null;
}

function draw(body, createdAt) {
  if (drawn) return;
  drawn = body;
  sessionId = body.session_id;
  // Relative time counts from the run's first point where the engine stamped it before the session was
  // created on the server (the SDK creates it as the run starts, and points carry the engine's own time).
  const firsts = Object.values(body.series).map((s) => s.timestamp[0]).filter((t) => t !== undefined && t !== null);
  origin = Math.min(seconds(createdAt), ...firsts);
  for (const [title, metrics] of GROUPS) {
    if (metrics.some((m) => body.series[m]?.value.length)) fill(addChart(title, title, metrics), body);
  }
  const longest = Object.values(body.series).reduce((a, s) => (s.value.length > (a?.value.length ?? 0) ? s : a), null);
  if (longest) markSeries(longest);
  backfillSeq = body.last_seq;
}

prefetched.then((body) => { if (body?.created_at && !backfilled) draw(body, body.created_at); });

async function start(snapshot) {
  performance.mark("tms:snapshot"); // bench/page.py: when the join's snapshot came
  sessionId = snapshot.session.session_id;
  totalEpisodes = snapshot.session.total_episodes;
  $("title").textContent = snapshot.session.name || sessionId;
  document.title = `${snapshot.session.name || sessionId} · Training Metrics Server`;
  setStatus(snapshot.session.status);
  setEpisode(snapshot.session.current_episode);
  if (snapshot.latest_decision) onDecision(snapshot.latest_decision);
  showRun(snapshot.session);
  if (backfilled) return;
  if (!drawn) await prefetched; // drawn by its own callback, registered first
  if (drawn?.session_id !== sessionId || drawn.epoch !== snapshot.session.epoch) {
    // Nothing prefetched (a room code, a server that wants credentials), or a session since reset.
    clearCharts();
    draw(await readSeries([...BUILT_IN]), snapshot.session.created_at);
  }
  (snapshot.graphs || []).forEach((graph) => showGraph(graph));
  if (backfillSeq < snapshot.session.last_seq) await catchUp();
  known = new Set(drawn.available);
  picker([...known]);
  backfilled = true;
  early.splice(0).forEach(handle);
  // Then what is not needed for the first chart (reads that would have queued before it).
  loadStatuses().catch(() => {});
  loadSummary().catch(() => {});
  loadPolicy().catch(() => {});
}

// Points stored between the prefetched history and the join: read as they are (a range is not downsampled
// below 10,000 points) and appended, so that nothing is missed.
async function catchUp() {
  const more = await readSeries([...BUILT_IN], { after_seq: backfillSeq, points: 10000 });
  for (const [title, metrics] of GROUPS) {
    if (!metrics.some((m) => more.series[m]?.value.length)) continue;
    const { chart } = charts.get(title) ?? addChart(title, title, metrics);
    for (const m of metrics) {
      const s = more.series[m];
      s?.value.forEach((v, i) => chart.append(m, s.seq[i], s.episode[i], s.timestamp[i], v, s.step[i]));
      if (s) markSeries(s);
    }
  }
  backfillSeq = more.last_seq;
}

// A live message's metrics, by name: its built-in fields that are series (bot/schemas.py SERIES_FIELDS) and
// its custom ones. NaN is left out of the charts, as the history leaves it out (it counts it instead).
const NOT_SERIES = new Set(["timestamp", "custom", "algorithm", "episode", "step"]);
const isNaNValue = (v) => v === "NaN" || Number.isNaN(v);
const metricsOf = (data) => [
  ...Object.entries(data).filter(([name, v]) => !NOT_SERIES.has(name) && v !== null && v !== undefined),
  ...Object.entries(data.custom || {}).filter(([, v]) => v !== null && v !== undefined),
];

function onMetrics(message) {
  const data = message.data, time = seconds(data.timestamp ?? message.timestamp);
  mark(time, message.seq, data.episode, data.step);
  const values = new Map();
  let fresh = false; // a metric the run had not logged before: the picker offers it
  for (const [name, value] of metricsOf(data)) {
    if (known && !known.has(name)) { known.add(name); fresh = true; }
    if (!isNaNValue(value)) values.set(name, value);
  }
  for (const [title, metrics] of GROUPS) {
    if (charts.has(title) || unticked.has(title) || !metrics.some((m) => values.has(m))) continue;
    addChart(title, title, metrics);
    fresh = true; // its box in the picker is ticked
  }
  for (const { chart, metrics } of charts.values()) {
    for (const m of metrics) if (values.has(m)) chart.append(m, message.seq, data.episode, time, values.get(m), data.step);
  }
  if (fresh) picker([...known]);
  if (data.total_episodes) totalEpisodes = data.total_episodes;
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
    case "graph_update": showGraph(message.data, message.seq); break;
    case "bot_decision": onDecision(message.data); break;
    case "training_status": setStatus(message.data.status); addStatus(message.seq, message.data.status, message.timestamp, message.data.message); break;
    case "reset": backfilled = false; clearCharts(); break;
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
      if (state === "disconnected" && event?.code === 4404) TMS.showProblem(`No session or room called "${key}" yet: waiting for it to start…`);
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
TMS.viewControls($("view"));
// After the charts' own listeners (they rebuild at once): the policy then takes their new x range.
TMS.onView(() => { if (policyBody) setTimeout(drawPolicy, 0); });
// The summary, the policy and the run panel follow the run: bounded reads every 5 s while the page is in view.
// The run panel too: its configuration and tags change without a message (a job's configuration comes once
// its process has read it).
const loadRun = async () => showRun(await TMS.api(`/api/training/sessions/${encodeURIComponent(sessionId)}`, roomHeaders()));
setInterval(() => {
  if (!sessionId || !backfilled || document.hidden) return;
  loadSummary().catch(() => {}); loadPolicy().catch(() => {}); loadRun().catch(() => {});
}, 5000);
$("export-csv").onclick = () => exportTo("format=csv");
$("export-json").onclick = () => exportTo("format=json");
connect(null);
window.sessionPage = { charts, policy: () => policy }; // for tests and the curious
