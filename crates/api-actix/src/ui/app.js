// The dashboard: read-only, a client of the public API like any other. The token lives in
// this tab's sessionStorage; the live feed is the SSE stream read with fetch (EventSource
// cannot send an Authorization header, and a token in the URL would end up in logs).
"use strict";

const TOKEN_KEY = "orchestrator-token";
const FEED_SIZE = 60;
const REFRESH_EVERY_MS = 5000;

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let lastEventId = 0;
let refreshTimer = null;
let streamAbort = null;

class Unauthorized extends Error {}

async function api(path, init = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(init.headers || {}) };
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) throw new Unauthorized("the token was refused");
  return response;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" || key === "class" || key === "datetime") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

// ----- Cluster view -----

function renderStatus(status) {
  const nodes = status.nodes || [];
  const deployments = status.deployments || [];
  const online = nodes.filter((n) => n.status === "online").length;
  const degraded = deployments.filter((d) => d.actual < d.required).length;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  $("summary").textContent =
    `${plural(nodes.length, "node")} (${online} online) · ${plural(deployments.length, "deployment")}` +
    (degraded ? ` (${degraded} degraded)` : "") +
    ` · leader: ${status.leader || "none"}`;

  const byNode = new Map(nodes.map((n) => [n.name, []]));
  for (const d of deployments) {
    for (const r of d.replicas || []) {
      if (byNode.has(r.node)) byNode.get(r.node).push({ deployment: d.name, ...r });
    }
  }
  const cards = nodes.map((n) => {
    const used = n.capacity - n.available;
    const share = n.capacity > 0 ? Math.round((100 * used) / n.capacity) : 0;
    const bar = el("div");
    bar.style.width = `${share}%`;
    const replicas = byNode.get(n.name).map((r) => {
      const state = r.health ? `${r.state}, ${r.health}` : r.state;
      const attrs = { "data-state": r.state, title: `${r.deployment} replica ${r.id}: ${state}`, text: `${r.deployment} #${r.id}` };
      if (r.health) attrs["data-health"] = r.health;
      return el("li", attrs);
    });
    return el("li", { class: "card node", "data-node": n.name, "data-status": n.status },
      el("div", { class: "card-head" },
        el("h3", { text: n.name }),
        el("span", { class: `badge ${n.status}`, text: n.status })),
      el("p", { class: "address", text: n.address }),
      el("div", { class: "meter", role: "meter", "aria-label": `${n.name} capacity used`,
        "aria-valuemin": "0", "aria-valuemax": String(n.capacity), "aria-valuenow": String(used) }, bar),
      el("p", { class: "units", text: `${used} of ${n.capacity} units used · ${replicas.length} replicas` }),
      el("ul", { class: "replicas", "aria-label": `replicas on ${n.name}` }, ...replicas));
  });
  $("nodes").replaceChildren(...cards);

  const rows = deployments.map((d) => {
    const count = el("td", { text: `${d.actual} / ${d.required}` });
    if (d.actual < d.required) count.append(el("span", { class: "degraded", text: "degraded" }));
    if (d.unplaced) {
      count.append(el("span", { class: "unplaced", text: `${d.unplaced.count} unplaced: ${d.unplaced.reason}` }));
    }
    if (d.crash_looping) {
      const code = d.crash_looping.last_exit_code ?? "none";
      count.append(el("span", { class: "unplaced crash-looping",
        text: `crash looping: ${d.crash_looping.restarts} failures in a row, last exit code ${code}` }));
    }
    return el("tr", { "data-deployment": d.name, "data-degraded": String(d.actual < d.required) },
      el("th", { scope: "row", text: d.name }),
      el("td", { text: d.image }),
      count,
      el("td", { text: String(d.version) }));
  });
  $("deployments").tBodies[0].replaceChildren(...rows);
  $("no-deployments").hidden = deployments.length > 0;
}

async function refresh() {
  refreshTimer = null;
  try {
    const response = await api("/status");
    if (response.ok) renderStatus(await response.json());
  } catch (e) {
    if (e instanceof Unauthorized) signOut(e.message);
  }
}

// Many events arrive at once when replicas move: one refresh for the burst.
function refreshSoon() {
  if (refreshTimer === null) refreshTimer = setTimeout(refresh, 250);
}

// ----- Events -----

function addEvent(event) {
  if (event.id <= lastEventId) return;
  lastEventId = event.id;
  const at = new Date(event.at_ms);
  const item = el("li", { "data-kind": event.kind, "data-id": String(event.id) },
    el("time", { datetime: at.toISOString(), text: at.toLocaleTimeString() }),
    el("span", { class: "kind", text: event.kind }),
    el("span", { class: "message", text: event.message }));
  const feed = $("events");
  feed.prepend(item);
  while (feed.children.length > FEED_SIZE) feed.lastElementChild.remove();
}

async function follow() {
  for (;;) {
    streamAbort = new AbortController();
    try {
      const response = await api("/v1/events/stream", {
        headers: { "Last-Event-ID": String(lastEventId) },
        signal: streamAbort.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      $("stream-state").textContent = "(live)";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
          if (data) {
            addEvent(JSON.parse(data));
            refreshSoon();
          }
        }
      }
    } catch (e) {
      if (e instanceof Unauthorized) return signOut(e.message);
      if (e.name === "AbortError") return;
    }
    $("stream-state").textContent = "(reconnecting)";
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function loadRecentEvents() {
  const response = await api(`/v1/events?tail=${FEED_SIZE}`);
  if (!response.ok) return;
  for (const event of await response.json()) addEvent(event);
}

// ----- Sign in and out -----

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  if (streamAbort) streamAbort.abort();
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("summary").textContent = "";
  $("token").focus();
}

async function start() {
  $("login-error").textContent = "";
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  try {
    await loadRecentEvents();
    await refresh();
  } catch (e) {
    if (e instanceof Unauthorized) return signOut(e.message);
  }
  if (token) follow();
}

// A safety net beside the stream: the view is never older than this.
setInterval(() => {
  if (token && !$("dashboard").hidden) refresh();
}, REFRESH_EVERY_MS);

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  $("token").value = "";
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
$("signout").addEventListener("click", () => signOut());

if (token) start();
else signOut();
