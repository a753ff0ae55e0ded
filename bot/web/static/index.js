// The session list: running, ended or all as tabs (with live counts), search by name, sort, a tag filter and a
// grouping by tag, compare selected. Refreshed every two seconds; the tab, search, sort, tag and grouping are
// kept in the URL.
"use strict";
const TABS = { running: "active,stale", ended: "completed,failed,stopped", all: "all" };
const SORTS = {
  created: (a, b) => Date.parse(b.created_at) - Date.parse(a.created_at),
  activity: (a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at),
  episode: (a, b) => (b.current_episode ?? -1) - (a.current_episode ?? -1),
};
const params = new URLSearchParams(location.search);
const state = {
  tab: TABS[params.get("tab")] ? params.get("tab") : "all",
  search: params.get("q") || "",
  sort: SORTS[params.get("sort")] ? params.get("sort") : "created",
  tag: params.get("tag") || "",
  group: params.get("group") === "tag",
};
const selected = new Set();
let sessions = [];
const $ = (id) => document.getElementById(id);

function remember() {
  const query = new URLSearchParams();
  if (state.tab !== "all") query.set("tab", state.tab);
  if (state.search) query.set("q", state.search);
  if (state.sort !== "created") query.set("sort", state.sort);
  if (state.tag) query.set("tag", state.tag);
  if (state.group) query.set("group", "tag");
  history.replaceState(null, "", `/${query.size ? `?${query}` : ""}`);
}

// "0.4 s", "42 s", "3 min 5 s", "2 h 4 min", "3 d 2 h": how long a run ran (or has run so far).
const UNITS = [["d", 86400, Infinity], ["h", 3600, 24], ["min", 60, 60], ["s", 1, 60]];
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 10) return `${seconds.toFixed(1)} s`; // a short run read "0 s"
  const amounts = UNITS.map(([unit, size, wrap]) => [Math.floor(seconds / size) % wrap, unit]);
  const first = amounts.findIndex(([n]) => n > 0);
  return first < 0 ? "0 s" : amounts.slice(first, first + 2).map(([n, unit]) => `${n} ${unit}`).join(" ");
}

// A password-protected room is listed with its name, status and times only (the rest is null): its row says so.
function row(s) {
  const done = TMS.episodesDone(s.current_episode ?? 0, s.total_episodes, s.status);
  const progress = s.password_protected
    ? '<span class="muted" title="a password-protected room: open it to give its password">🔒 protected</span>'
    : s.total_episodes
      ? `<progress max="${s.total_episodes}" value="${done}"></progress> ${done}/${s.total_episodes}`
      : (s.current_episode ?? "–");
  const tr = document.createElement("tr");
  tr.dataset.session = s.session_id;
  if (s.password_protected) tr.dataset.protected = "";
  const main = s.main_metric;
  const reward = main ? `${TMS.formatNumber(main.last)} / ${TMS.formatNumber(main.best)}` : "–";
  tr.innerHTML = `<td><input type="checkbox" aria-label="select" ${selected.has(s.session_id) ? "checked" : ""}></td>
    <td><a href="/sessions/${encodeURIComponent(s.session_id)}"></a></td>
    <td><span class="pill ${s.status}">${s.status}</span></td><td class="algorithm wide"></td>
    <td>${progress}</td><td class="main-metric">${reward}</td><td class="duration wide">${duration(s.duration_seconds)}</td>
    <td class="spectators wide">${s.spectators ?? "–"}</td><td class="muted">${new Date(s.updated_at).toLocaleString()}</td>`;
  tr.querySelector("a").textContent = s.name || s.session_id;
  tr.querySelector("a").after(...(s.tags || []).map((tag) => {
    const chip = Object.assign(document.createElement("button"), { type: "button", className: "tag", textContent: tag, title: `only the runs tagged ${tag}` });
    chip.dataset.tag = tag;
    chip.onclick = () => setTag(tag);
    return chip;
  }));
  tr.querySelector(".algorithm").textContent = s.algorithm || "";
  tr.querySelector("input").onchange = (e) => {
    e.target.checked ? selected.add(s.session_id) : selected.delete(s.session_id);
    showSelection();
  };
  return tr;
}

function showSelection() {
  $("compare").disabled = selected.size < 2 || selected.size > 10;
  $("compare").textContent = `Compare selected (${selected.size})`;
}

function render() {
  const needle = state.search.trim().toLowerCase();
  const shown = sessions
    .filter((s) => !needle || (s.name || "").toLowerCase().includes(needle) || s.session_id.toLowerCase().includes(needle))
    .sort(SORTS[state.sort]);
  const empty = Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="9" class="muted"></td>' });
  empty.firstChild.textContent = sessions.length ? "No session matches." : "No sessions here yet.";
  $("sessions").replaceChildren(...(!shown.length ? [empty] : state.group ? grouped(shown) : shown.map(row)));
  $("tag-filter").hidden = !state.tag;
  $("tag-filter-name").textContent = state.tag;
  $("group-by-tag").checked = state.group;
  document.querySelectorAll("[data-tab]").forEach((tab) => tab.setAttribute("aria-selected", String(tab.dataset.tab === state.tab)));
  $("search").value = state.search;
  $("sort").value = state.sort;
}

// Grouped by tag, as W&B groups runs: a heading row per tag with its runs (a run under each of its tags), then
// the untagged ones.
function grouped(shown) {
  const tags = [...new Set(shown.flatMap((s) => s.tags || []))].sort();
  const groups = [...tags.map((tag) => [tag, shown.filter((s) => (s.tags || []).includes(tag))]), ["untagged", shown.filter((s) => !s.tags?.length)]];
  return groups.filter(([, runs]) => runs.length).flatMap(([tag, runs]) => {
    const head = Object.assign(document.createElement("tr"), { className: "group" });
    head.dataset.group = tag;
    head.innerHTML = '<th colspan="9"></th>';
    head.firstChild.textContent = `${tag} · ${runs.length} run${runs.length === 1 ? "" : "s"}`;
    return [head, ...runs.map(row)];
  });
}

function setTag(tag) { state.tag = tag; remember(); refresh(); }

async function refresh() {
  try {
    const tag = state.tag ? `&tag=${encodeURIComponent(state.tag)}` : "";
    const [listed, ...counts] = await Promise.all([
      TMS.api(`/api/training/sessions?status=${TABS[state.tab]}&limit=500${tag}`),
      ...Object.values(TABS).map((status) => TMS.api(`/api/training/sessions?status=${status}&limit=1`)),
    ]);
    sessions = listed.sessions;
    Object.keys(TABS).forEach((tab, i) => { $(`count-${tab}`).textContent = counts[i].total; });
    render();
  } catch (error) { /* the banner says it */ }
}

document.querySelectorAll("[data-tab]").forEach((tab) => {
  tab.onclick = () => { state.tab = tab.dataset.tab; remember(); render(); refresh(); };
});
$("search").oninput = (e) => { state.search = e.target.value; remember(); render(); };
$("sort").onchange = (e) => { state.sort = e.target.value; remember(); render(); };
$("group-by-tag").onchange = (e) => { state.group = e.target.checked; remember(); render(); };
$("tag-filter-clear").onclick = () => setTag("");
$("compare").onclick = () => { location.href = `/compare?sessions=${[...selected].map(encodeURIComponent).join(",")}`; };
showSelection();
render();
refresh();
setInterval(refresh, 2000);
window.listPage = { sessions: () => sessions, state };
