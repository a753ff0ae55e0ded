// Shared by the pages: API calls, the "server unreachable" banner, a self-healing spectator socket, charts.
"use strict";

const banner = () => document.getElementById("banner");

function showProblem(text) {
  const el = banner();
  if (el) { el.textContent = text; el.classList.add("shown"); }
}

function clearProblem() {
  const el = banner();
  if (el) el.classList.remove("shown");
}

// With access control on (TMS_ENABLE_AUTH), a page asks once for an API key (read scope) and keeps it for
// this tab only (sessionStorage, never a URL): a Bearer header on API reads, the first WebSocket message.
const KEY_STORE = "tms-api-key";
const apiKey = () => sessionStorage.getItem(KEY_STORE);
const authHeaders = () => (apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {});
const KEY_NEEDED = "This server needs an API key: reload the page to give one.";
let declined = false; // the prompt was cancelled: the page does not ask again (each refused read would)
// `used`: the key the refused request carried; one another request stored since is tried without asking.
function askForKey(why, used = apiKey()) {
  if (apiKey() && apiKey() !== used) return true;
  if (declined) return false;
  const key = (window.prompt(`${why}\nAn API key with the read scope:`) || "").trim();
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else { declined = true; showProblem(KEY_NEEDED); }
  return Boolean(key);
}

async function api(path, headers = {}) {
  let response;
  const used = apiKey(), auth = used ? { Authorization: `Bearer ${used}` } : {};
  try {
    response = await fetch(path, { headers: { Accept: "application/json", ...auth, ...headers } });
  } catch (error) {
    showProblem("Cannot reach the server. Retrying…");
    throw error;
  }
  if (response.status === 401 && !headers["X-Room-Password"]) {
    if (askForKey("This server needs an API key.", used)) return api(path, headers);
    showProblem(KEY_NEEDED); // said on every refused read, so that nothing else hides it
    throw new Error(KEY_NEEDED);
  }
  clearProblem();
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
}

// A download of an API export. A plain link lets the browser stream it to disk; with a key or a room password
// (headers, which a link cannot carry) it is fetched, then saved.
async function download(path, headers = {}) {
  const auth = apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};
  const link = Object.assign(document.createElement("a"), { download: "" });
  if (!Object.keys({ ...auth, ...headers }).length) { link.href = path; link.click(); return; }
  const response = await fetch(path, { headers: { ...auth, ...headers } });
  if (!response.ok) { showProblem(`Export failed: ${response.status} ${await response.text()}`); return; }
  link.download = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || "export";
  link.href = URL.createObjectURL(await response.blob());
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

// Nested metadata is shown flat, with dotted keys: {"optimizer": {"lr": 0.001}} is optimizer.lr = 0.001.
function flatten(value, prefix = "", out = []) {
  if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out.push([prefix, typeof value === "string" ? value : JSON.stringify(value)]);
  return out;
}

// Non-finite values travel as strings ("NaN", "Infinity"); a chart draws them as gaps.
const plain = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

// A spectator connection that reconnects by itself with `since` and `epoch`, so no message is missed.
class Spectator {
  // `since` and `epoch` (from a history read) make the stream start right after what was read.
  constructor(key, { types, onMessage, onState, password, since, epoch }) {
    this.key = key; this.types = types; this.onMessage = onMessage; this.onState = onState || (() => {});
    this.password = password || null; this.lastSeq = since ?? null; this.epoch = epoch ?? null;
    this.delay = 500; this.closed = false;
    this.open();
  }
  url() {
    const params = new URLSearchParams({ user_name: "web" });
    if (this.types) params.set("types", this.types.join(","));
    if (this.lastSeq !== null) { params.set("since", this.lastSeq); params.set("epoch", this.epoch); }
    // Credentials come in the first message, never in the URL (proxies and access logs keep URLs).
    params.set("auth", "message");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/ws/${encodeURIComponent(this.key)}?${params}`;
  }
  open() {
    this.onState("connecting");
    const ws = (this.ws = new WebSocket(this.url()));
    // Always a first `auth` message (`?auth=message` makes the server wait for it), with the key and the
    // room password where there are: a server with access control or a protected room answers at once
    // (4401, 4403) rather than waiting; an open session takes it as a no-op.
    ws.onopen = () => {
      const credentials = { ...(apiKey() ? { token: apiKey() } : {}), ...(this.password ? { password: this.password } : {}) };
      ws.send(JSON.stringify({ type: "auth", ...credentials }));
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connection_status" && message.data.event === "connected") {
        this.delay = 500; clearProblem(); this.onState("connected");
        if (this.epoch === null) this.epoch = message.data.epoch;
      }
      if (message.type === "reset") { this.epoch = message.data.epoch; this.lastSeq = 0; }
      if (message.seq !== null && message.seq !== undefined) this.lastSeq = message.seq;
      else if (message.type === "snapshot" && this.lastSeq === null) this.lastSeq = message.data.session.last_seq;
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.closed) return;
      this.onState("disconnected", event);
      if (event.code === 4401) { // a key is needed, or the one given expired or was revoked
        if (askForKey(event.reason || "This server needs an API key.")) setTimeout(() => this.open(), 0);
        return;
      }
      if ([4403, 4410, 4400].includes(event.code)) return; // retrying cannot help
      // 4404 is retried: a run's address is printed as it starts, before the server has its session.
      if (event.code === 1006) showProblem("Cannot reach the server. Reconnecting…");
      // Jittered, so that the spectators of a server that went away do not all come back at once; a 1013
      // (too many connections at once) says how long to wait.
      const advised = /retry in ([\d.]+) s/.exec(event.reason || "");
      setTimeout(() => this.open(), advised ? Number(advised[1]) * 1000 : this.delay * (0.5 + Math.random()));
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }
  close() { this.closed = true; if (this.ws) this.ws.close(); }
}

// Episodes done, for a progress bar: an engine counting from 0 ends a completed run of 300 on episode 299,
// which is all 300 done, not 299 of them.
const episodesDone = (episode, total, status) => (status === "completed" && total && episode === total - 1 ? total : episode);

// Grouped, the whole part always exact ("30,000", "1,234,567", "59,999.5"), five significant digits in all
// or one decimal, whichever is more ("12.346", "0.0012346"); an exponent past what grouping reads well.
const SMALL = new Intl.NumberFormat("en", { maximumSignificantDigits: 5 });
const wholeDigits = [...Array(10).keys()].map((d) => new Intl.NumberFormat("en", { maximumFractionDigits: Math.max(1, 5 - d) }));
function formatNumber(v) {
  if (v === null || v === undefined) return "–";
  const n = Number(v), size = Math.abs(n);
  if (size && (size >= 1e9 || size < 1e-4)) return n.toExponential(4).replace(/\.?0+e/, "e");
  return size < 1 ? SMALL.format(n) : wholeDigits[String(Math.trunc(size)).length].format(n);
}

// Series colours, in order (charts.js).
const COLOURS = ["#4aa3ff", "#3fb950", "#f0883e", "#d2a8ff", "#ff6b6b", "#e3b341", "#39c5cf", "#f778ba"];

window.TMS = { api, authHeaders, download, episodesDone, flatten, formatNumber, Spectator, plain, showProblem, clearProblem, COLOURS };
