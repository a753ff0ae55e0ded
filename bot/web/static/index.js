// The session list: refreshed every two seconds.
"use strict";
const selected = new Set();

function row(s) {
  const progress = s.total_episodes
    ? `<progress max="${s.total_episodes}" value="${s.current_episode ?? 0}"></progress> ${s.current_episode ?? 0}/${s.total_episodes}`
    : (s.current_episode ?? "–");
  const tr = document.createElement("tr");
  tr.dataset.session = s.session_id;
  tr.innerHTML = `<td><input type="checkbox" ${selected.has(s.session_id) ? "checked" : ""}></td>
    <td><a href="/sessions/${encodeURIComponent(s.session_id)}"></a></td>
    <td><span class="pill ${s.status}">${s.status}</span></td><td class="algorithm"></td>
    <td>${progress}</td><td class="spectators">${s.spectators}</td><td class="muted">${new Date(s.updated_at).toLocaleTimeString()}</td>`;
  tr.querySelector("a").textContent = s.name || s.session_id;
  tr.querySelector(".algorithm").textContent = s.algorithm || "";
  tr.querySelector("input").onchange = (e) => {
    e.target.checked ? selected.add(s.session_id) : selected.delete(s.session_id);
    document.getElementById("compare").disabled = selected.size < 1;
  };
  return tr;
}

async function refresh() {
  const status = document.getElementById("show-all").checked ? "all" : "active";
  try {
    const { sessions } = await TMS.api(`/api/training/sessions?status=${status}&limit=200`);
    const body = document.getElementById("sessions");
    body.replaceChildren(...(sessions.length ? sessions.map(row) : [Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="7" class="muted">No sessions yet.</td>' })]));
  } catch (error) { /* the banner says it */ }
}

document.getElementById("show-all").onchange = refresh;
document.getElementById("compare").onclick = () => { location.href = `/compare?sessions=${[...selected].map(encodeURIComponent).join(",")}`; };
refresh();
setInterval(refresh, 2000);
