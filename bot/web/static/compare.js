// Several sessions' runs of one metric on one chart, live, each session its own colour and legend entry.
"use strict";
const params = new URLSearchParams(location.search);
const ids = (params.get("sessions") || "").split(",").map((s) => s.trim()).filter(Boolean);
let metric = params.get("metric") || "current_reward";
let runs = []; // per session: { xs, ys }
let chart = null, sockets = [], pending = false;

function draw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; chart.plot.setData(uPlot.join(runs.map((r) => [r.xs, r.ys]))); });
}

async function load() {
  sockets.forEach((s) => s.close());
  document.getElementById("chart").replaceChildren();
  chart = new TMS.LiveChart(document.getElementById("chart"), metric, ids);
  const bodies = await Promise.all(ids.map((id) => TMS.api(`/api/training/sessions/${encodeURIComponent(id)}/series?metric=${encodeURIComponent(metric)}&points=1000`)));
  runs = bodies.map((body) => {
    const s = body.series[metric];
    return { xs: s.seq.map((seq, i) => s.episode[i] ?? seq), ys: s.value.map(TMS.plain), lastSeq: body.last_seq, epoch: body.epoch };
  });
  const available = [...new Set(bodies.flatMap((b) => b.available))].sort();
  const select = document.getElementById("metric");
  select.replaceChildren(...available.map((m) => Object.assign(document.createElement("option"), { value: m, textContent: m, selected: m === metric })));
  draw();
  sockets = ids.map((id, i) => new TMS.Spectator(id, {
    types: ["training_metrics"], since: runs[i].lastSeq, epoch: runs[i].epoch,
    onMessage: (message) => {
      if (message.type !== "training_metrics" || message.seq <= runs[i].lastSeq) return;
      const value = message.data[metric] ?? message.data.custom?.[metric];
      if (value === undefined) return;
      const x = message.data.episode ?? message.seq;
      if (runs[i].xs.length && x < runs[i].xs[runs[i].xs.length - 1]) return;
      runs[i].xs.push(x); runs[i].ys.push(TMS.plain(value)); runs[i].lastSeq = message.seq;
      draw();
    },
  }));
}

document.getElementById("metric").onchange = (event) => {
  metric = event.target.value;
  history.replaceState(null, "", `?sessions=${ids.join(",")}&metric=${metric}`);
  load().catch((e) => TMS.showProblem(e.message));
};
if (!ids.length) TMS.showProblem("Choose sessions to compare on the session list (or add ?sessions=a,b to the address).");
else load().catch((e) => TMS.showProblem(`Could not load: ${e.message}`));
window.comparePage = { runs: () => runs }; // for tests and the curious
