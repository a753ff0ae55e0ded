// Charts read the way TensorBoard and W&B users expect: smoothing (TensorBoard's debiased exponential moving
// average) over the raw line kept faint, linear or log y, a choice of x (step, episode, wall time, relative
// time), drag to zoom (every chart follows; a button resets), the value of every series at the cursor in
// the legend, and y labels sized to their longest tick so that "20,000" never reads "0,000". The view lives
// in the URL, so a link shows the same view. Each series keeps a bounded, decimated copy of its points.
"use strict";

const X_AXES = { step: "step", episode: "episode", wall: "wall time", relative: "relative time (s)" };
const MAX_KEPT = 4000; // points per series: past it every other point is dropped, and then one in 2, 4, … kept

// The page's view, shared by its charts.
const view = { smoothing: 0, log: false, x: "step", zoom: null };
const viewListeners = new Set();

function readView() {
  const params = new URLSearchParams(location.search);
  const smoothing = Number(params.get("smoothing"));
  view.smoothing = Number.isFinite(smoothing) ? Math.min(0.99, Math.max(0, smoothing)) : 0;
  view.log = params.get("y") === "log";
  view.x = X_AXES[params.get("x")] ? params.get("x") : "step";
  const zoom = (params.get("zoom") || "").split(",").map(Number);
  view.zoom = zoom.length === 2 && zoom.every(Number.isFinite) && zoom[0] < zoom[1] ? zoom : null;
}

function setView(changes) {
  if (changes.x && changes.x !== view.x) changes.zoom = null; // a range of steps means nothing in seconds
  Object.assign(view, changes);
  const params = new URLSearchParams(location.search);
  const put = (name, value, fallback) => (value === fallback ? params.delete(name) : params.set(name, value));
  put("smoothing", String(view.smoothing), "0");
  put("y", view.log ? "log" : "linear", "linear");
  put("x", view.x, "step");
  put("zoom", view.zoom ? view.zoom.map((v) => +v.toPrecision(12)).join(",") : "", "");
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
  viewListeners.forEach((listener) => listener());
}

// TensorBoard's smoothing, an exponential moving average debiased so that the first points are not pulled
// toward zero, weighted by x as W&B's "time weighted" one: a point's pull grows with its distance from the
// last one (weight ** (dx / mean dx)). Evenly spaced points get TensorBoard's curve exactly; 1,000 downsampled
// history points and the dense live tail after them are smoothed alike, one curve across the seam. Gaps
// (NaN, or not positive on a log scale) stay gaps and do not reset it.
function smooth(xs, values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  const first = xs.findIndex((x) => x !== null), last = xs.findLastIndex((x) => x !== null);
  const spacing = last > first ? (xs[last] - xs[first]) / (last - first) : 0;
  let smoothed = 0, kept = 1, previous = null;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null) { out[i] = null; continue; }
    const decay = previous === null || !(spacing > 0) ? weight : weight ** (Math.max(0, xs[i] - previous) / spacing);
    smoothed = smoothed * decay + (1 - decay) * v;
    kept *= decay;
    out[i] = smoothed / (1 - kept);
    previous = xs[i];
  }
  return out;
}

// One metric's points: seq (or index), episode, the engine's step, time (epoch seconds), value; bounded by
// decimation.
const COLUMNS = ["seq", "episode", "step", "time", "value"];
class Series {
  constructor() { this.clear(); }
  clear() { for (const name of COLUMNS) this[name] = []; this.stride = 1; this.seen = 0; this.steps = 0; this.episodes = 0; }
  load({ seq, episode, step, time, value }) {
    this.clear();
    for (let i = 0; i < value.length; i++) this.push(seq[i], episode[i], time[i], value[i], step?.[i]);
  }
  push(seq, episode, time, value, step = null) {
    if (this.seen++ % this.stride) return;
    this.seq.push(seq ?? this.seq.length); this.episode.push(episode ?? null); this.time.push(time ?? null);
    this.step.push(step ?? null); this.value.push(TMS.plain(value));
    if (step !== null && step !== undefined) this.steps += 1;
    if (episode !== null && episode !== undefined) this.episodes += 1;
    if (this.value.length > MAX_KEPT) {
      for (const name of COLUMNS) this[name] = this[name].filter((_, i) => i % 2 === 0);
      this.stride *= 2;
    }
  }
  xs(axis, origin) {
    if (axis === "step" || axis === "episode" || axis === "seq") return this[axis];
    if (axis === "wall") return this.time;
    origin = this.origin ?? origin; // a compared run counts from its own start
    return this.time.map((t) => (t === null ? null : t - origin));
  }
}

// What "step" means for a set of series: the engine's own step where any was sent, else the episode, else
// the message's number; said on the axis.
const STEP_KINDS = { step: "step", episode: "episode (no step sent)", seq: "message # (no step or episode sent)" };
function stepKind(series) {
  if (series.some((s) => s.steps)) return "step";
  return series.some((s) => s.episodes) ? "episode" : "seq";
}

const cssColour = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// A y axis as wide as its longest tick label (uPlot's default width is fixed, and cuts long labels).
function fitAxis(self, values, axisIndex, cycle) {
  const axis = self.axes[axisIndex];
  if (cycle > 1) return axis._size;
  let size = axis.ticks.size + axis.gap;
  const longest = (values ?? []).reduce((a, v) => (String(v).length > a.length ? String(v) : a), "");
  if (longest) { self.ctx.font = axis.font[0]; size += self.ctx.measureText(longest).width / devicePixelRatio; }
  return Math.ceil(size) + 4;
}

// x tick labels that never collide, are never cut and never round: compact past 10,000 ("250K", "1.5M", as
// TensorBoard's) with as many fraction digits as the ticks need to read exactly ("2.5K", not "3K"), written
// out whole where compact would need more than two ("999,992" when zoomed into ten steps of a million),
// ticks spaced by the widest label, and room at the right for the last one.
const X_PADDING = 36; // px right of the plot: half the widest label ("12:30:45", "1,000,000")
const formats = new Map();
function numberFormat(key, options) {
  if (!formats.has(key)) formats.set(key, new Intl.NumberFormat("en", options));
  return formats.get(key);
}
const compactUnit = (v) => { const a = Math.abs(v); return a >= 1e9 ? 1e9 : a >= 1e6 ? 1e6 : a >= 1e3 ? 1e3 : 1; };
const exactIn = (v, unit, digits) => Math.abs(Number((v / unit).toFixed(digits)) * unit - v) <= 1e-9 * Math.max(1, Math.abs(v));
function digitsFor(values, unitOf) {
  for (let d = 0; d < 6; d++) if (values.every((v) => exactIn(v, unitOf(v), d))) return d;
  return 6;
}
function xFormat(values) {
  const span = Math.max(...values.map(Math.abs));
  const compact = span >= 10000 ? digitsFor(values, compactUnit) : 99;
  if (compact <= 2) return numberFormat(`c${compact}`, { notation: "compact", maximumFractionDigits: compact });
  const whole = digitsFor(values, () => 1);
  return numberFormat(`g${whole}`, { maximumFractionDigits: whole });
}
function xLabels(u, splits) {
  const format = xFormat(splits.filter((v) => v !== null && v !== undefined));
  return splits.map((v) => (v === null || v === undefined ? null : format.format(v)));
}
// Ticks as uPlot would place them about 20 to the range (1, 2 or 5 times a power of ten apart).
function likelyTicks(min, max) {
  const rough = (max - min) / 20 || Math.abs(max) || 1, power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const first = Math.ceil(min / step) * step;
  return [...Array(22).keys()].map((i) => first + i * step).filter((v) => v <= max);
}
function xSpace(u, axisIndex, min, max) {
  // The widest label among ticks closer than uPlot will place them: its own (fewer) labels are no longer.
  const axis = u.axes[axisIndex], ticks = likelyTicks(min, max);
  const format = xFormat(ticks.length ? ticks : [min, max]);
  u.ctx.font = axis.font[0];
  const widest = Math.max(...[min, max, ...ticks].map((v) => u.ctx.measureText(format.format(v) + "0").width / devicePixelRatio));
  return Math.max(50, Math.ceil(widest) + 16);
}
const xAxis = (time) => (time ? {} : { values: xLabels, space: xSpace });

class RunChart {
  // `origin`: epoch seconds that relative time counts from (the session's creation).
  constructor(container, title, names, { yLabel = "", origin = 0 } = {}) {
    this.container = container; this.title = title; this.yLabel = yLabel; this.origin = origin;
    this.series = new Map(names.map((name) => [name, new Series()]));
    this.labels = new Map(); // a series' name in the legend, where not its key (compare: a run's name, not its id)
    this.plot = null; this.drawnAt = -Infinity;
    this.onView = () => this.rebuild();
    viewListeners.add(this.onView);
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(container);
    container.addEventListener("dblclick", () => { if (view.zoom) setView({ zoom: null }); }); // uPlot's reset
    this.rebuild();
  }
  size() { return { width: Math.max(260, this.container.clientWidth - 8), height: 240 }; }
  add(name, origin) {
    if (!this.series.has(name)) {
      this.series.set(name, Object.assign(new Series(), { origin }));
      this.stale = true; // rebuilt once, at the next frame, however many series arrive before it
      this.redraw();
    }
    return this.series.get(name);
  }
  load(name, columns) { this.add(name).load(columns); this.redraw(); }
  append(name, seq, episode, time, value, step = null) { this.add(name).push(seq, episode, time, value, step); this.redraw(); }
  points() { return Math.max(0, ...[...this.series.values()].map((s) => s.value.length)); }
  destroy() { waiting.delete(this); viewListeners.delete(this.onView); this.resize.disconnect(); this.plot?.destroy(); this.container.remove(); }

  // uPlot's columns: x, then for each metric its raw values and, when smoothing, its smoothed ones.
  // The x this chart draws: view.x, with "step" resolved to what its series carry (stepKind).
  axis() { return view.x === "step" ? stepKind([...this.series.values()]) : view.x; }
  axisLabel() { return view.x === "step" ? STEP_KINDS[this.axis()] : X_AXES[view.x]; }

  data() {
    const axis = this.axis();
    this.drawnAxis = axis;
    const tables = [...this.series.values()].map((s) => {
      const xs = s.xs(axis, this.origin);
      const keep = [];
      for (let i = 0; i < xs.length; i++) if (xs[i] !== null) keep.push(i);
      keep.sort((a, b) => xs[a] - xs[b]); // episodes may go backwards when an engine restarts its count
      const raw = keep.map((i) => (view.log && !(s.value[i] > 0) ? null : s.value[i]));
      const x = keep.map((i) => xs[i]);
      return view.smoothing ? [x, raw, smooth(x, raw, view.smoothing)] : [x, raw];
    });
    if (!tables.length) return [[]];
    return tables.length === 1 ? tables[0] : uPlot.join(tables);
  }

  rebuild() {
    this.stale = false;
    this.plot?.destroy();
    const text = cssColour("--muted") || "#8b98a5", grid = cssColour("--grid") || "#2d3742";
    const smoothing = view.smoothing > 0;
    const series = [{ label: this.axisLabel() }];
    [...this.series.keys()].forEach((key, i) => {
      const colour = TMS.COLOURS[i % TMS.COLOURS.length], name = this.labels.get(key) ?? key;
      series.push({ label: smoothing ? `${name} (raw)` : name, stroke: smoothing ? `${colour}40` : colour, width: 1.25, spanGaps: false });
      if (smoothing) series.push({ label: name, stroke: colour, width: 1.75, spanGaps: true });
    });
    const time = view.x === "wall";
    this.plot = new uPlot({
      title: this.title, ...this.size(), padding: [null, X_PADDING, null, null],
      scales: { x: { time }, y: view.log ? { distr: 3 } : {} },
      axes: [
        { stroke: text, grid: { stroke: grid }, label: this.axisLabel(), ...xAxis(time) },
        { stroke: text, grid: { stroke: grid }, label: this.yLabel, size: fitAxis },
      ],
      cursor: { sync: { key: "tms" }, drag: { x: true, y: false } },
      series,
      hooks: {
        setSelect: [(u) => this.zoomed(u)],
        // When the page first showed data, in ms since navigation (bench/page.py reads it).
        draw: [(u) => { if (u.data[0].length && TMS.firstDrawAt === undefined) TMS.firstDrawAt = performance.now(); }],
      },
    }, this.data(), this.container);
    // Smoothed, each metric has one legend entry (the smoothed value at the cursor), not "x (raw)" and "x".
    if (smoothing) this.plot.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => { if (i % 2) row.style.display = "none"; });
    this.applyZoom();
  }

  zoomed(u) {
    if (u.select.width < 2) return;
    const min = u.posToVal(u.select.left, "x"), max = u.posToVal(u.select.left + u.select.width, "x");
    setView({ zoom: [min, max] });
  }
  applyZoom() { if (view.zoom) this.plot.setScale("x", { min: view.zoom[0], max: view.zoom[1] }); }

  redraw() {
    if (!waiting.size) requestAnimationFrame(drawWaiting);
    waiting.add(this);
  }
  draw() {
    if (this.stale || (view.x === "step" && this.axis() !== this.drawnAxis)) { this.rebuild(); return; }
    this.plot.setData(this.data(), !view.zoom);
    this.applyZoom();
  }
}

// Charts with new data, the longest waiting first. A frame draws one of them, and a chart is drawn at most ten
// times a second: drawing every chart of the page in the frame its data came in (1,000 points/s live) made
// frames of 50 ms; ten times a second is as live as a chart needs to look.
const waiting = new Set();
const REDRAW_MS = 100;
function drawWaiting(now) {
  for (const chart of waiting) {
    if (now - chart.drawnAt < REDRAW_MS) continue;
    waiting.delete(chart);
    chart.drawnAt = now;
    chart.draw();
    break;
  }
  if (waiting.size) requestAnimationFrame(drawWaiting);
}

// The controls above the charts: smoothing, y scale, x axis, reset zoom; they change the shared view.
function viewControls(container, axes = Object.keys(X_AXES)) {
  container.innerHTML = `
    <label>Smoothing <input id="smoothing" type="range" min="0" max="0.99" step="0.01"> <output id="smoothing-value"></output></label>
    <label>Y <select id="y-scale"><option value="linear">linear</option><option value="log">log</option></select></label>
    <label>X <select id="x-axis">${axes.map((x) => `<option value="${x}">${X_AXES[x]}</option>`).join("")}</select></label>
    <button id="reset-zoom" type="button">Reset zoom</button>`;
  const show = () => {
    container.querySelector("#smoothing").value = view.smoothing;
    container.querySelector("#smoothing-value").textContent = view.smoothing.toFixed(2);
    container.querySelector("#y-scale").value = view.log ? "log" : "linear";
    container.querySelector("#x-axis").value = view.x;
    container.querySelector("#reset-zoom").disabled = !view.zoom;
  };
  container.querySelector("#smoothing").oninput = (e) => setView({ smoothing: Number(e.target.value) });
  container.querySelector("#y-scale").onchange = (e) => setView({ log: e.target.value === "log" });
  container.querySelector("#x-axis").onchange = (e) => setView({ x: e.target.value });
  container.querySelector("#reset-zoom").onclick = () => setView({ zoom: null });
  viewListeners.add(show);
  show();
}

readView();
const onView = (listener) => viewListeners.add(listener);
Object.assign(window.TMS, { RunChart, view, setView, smooth, viewControls, onView, xAxis, X_AXES, X_PADDING });
