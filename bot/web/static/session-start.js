// The first thing the session page runs, from its <head>, before its styles and charts load: the chart
// groups, and the request for their history, so that the history is on its way while the rest loads and the
// WebSocket joins (a room code, or a server that wants credentials, answers no and the page asks again
// after the join). session.js draws the history the moment it is here, and checks it against the join.
"use strict";
window.SESSION_GROUPS = [
  ["Reward", ["current_reward", "average_reward"]], ["Loss", ["loss_value"]], ["Epsilon", ["epsilon"]], ["Win rate (%)", ["win_rate"]],
  // What the run costs the machine (the SDK's system_metrics), charted after the run's own.
  ["System · CPU (%)", ["system/cpu_percent", "system/gpu_percent"]], ["System · memory (MB)", ["system/rss_mb", "system/gpu_memory_mb"]],
  ["System · threads", ["system/threads"]],
];
window.seriesPath = (id, metrics, extra = {}) => {
  const params = new URLSearchParams({ points: 1000, ...extra }); // a chart is about 1,000 px wide
  metrics.forEach((m) => params.append("metric", m));
  return `/api/training/sessions/${encodeURIComponent(id)}/series?${params}`;
};
window.SESSION_PREFETCH = (() => {
  const key = decodeURIComponent(location.pathname.split("/").pop());
  const token = sessionStorage.getItem("tms-api-key"); // app.js's KEY_STORE
  const metrics = window.SESSION_GROUPS.flatMap(([, group]) => group);
  return fetch(window.seriesPath(key, metrics), { headers: token ? { Authorization: `Bearer ${token}` } : {} })
    .then((response) => (response.ok ? response.json() : null))
    .catch(() => null)
    .finally(() => performance.mark("tms:series")); // bench/page.py: when the history came
})();
