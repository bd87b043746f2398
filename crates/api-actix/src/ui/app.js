// The dashboard: a client of the public API like any other (changes, from a deployment's
// panel, need an admin token; the server decides). The token lives in
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
//
// Up to WHOLE_UP_TO the view is the whole `/status` document: every replica on its node's card.
// Beyond, it never asks for the whole cluster (a million replicas is hundreds of megabytes):
// the counts (`/status/summary`), the nodes and the deployments with their counts, and a node's
// replicas when its card is opened (`/status?node=`). Cards and rows are added a page at a time,
// so thousands of them never freeze the page.

const WHOLE_UP_TO = { nodes: 200, replicas: 5000 };
const CARDS_PER_PAGE = 200;
const ROWS_PER_PAGE = 500;
let cardsShown = CARDS_PER_PAGE;
let rowsShown = ROWS_PER_PAGE;
// Large clusters: the nodes whose replicas were asked for, and what they hold.
const openNodes = new Map();
let lastView = null;

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function renderSummary(summary) {
  const { nodes, deployments, replicas } = summary;
  $("summary").textContent =
    `${plural(nodes.total, "node")} (${nodes.online} online) · ${plural(deployments.total, "deployment")}` +
    (deployments.degraded ? ` (${deployments.degraded} degraded)` : "") +
    ` · ${replicas.ready} of ${replicas.required} replicas ready · leader: ${summary.leader || "none"}`;
}

function isLarge(summary) {
  return summary.nodes.total > WHOLE_UP_TO.nodes || summary.replicas.running + summary.replicas.pending > WHOLE_UP_TO.replicas;
}

function replicaItem(r) {
  const state = r.health ? `${r.state}, ${r.health}` : r.state;
  const attrs = { "data-state": r.state, title: `${r.deployment} replica ${r.id}: ${state}`, text: `${r.deployment} #${r.id}` };
  if (r.health) attrs["data-health"] = r.health;
  return el("li", attrs);
}

// The replicas of each node in a status document, by node name.
function replicasByNode(status) {
  const byNode = new Map();
  for (const d of status.deployments || []) {
    for (const r of d.replicas || []) {
      if (!byNode.has(r.node)) byNode.set(r.node, []);
      byNode.get(r.node).push({ deployment: d.name, ...r });
    }
  }
  return byNode;
}

// A node's card. `replicas`: its replicas, or `undefined` when they were not asked for (a
// large cluster), then a button asks for them.
function nodeCard(n, replicas) {
  const used = n.capacity - n.available;
  const share = n.capacity > 0 ? Math.round((100 * used) / n.capacity) : 0;
  const bar = el("div");
  bar.style.width = `${share}%`;
  const card = el("li", { class: "card node", "data-node": n.name, "data-status": n.status },
    el("div", { class: "card-head" },
      el("h3", { text: n.name }),
      el("span", { class: `badge ${n.status}`, text: n.status })),
    el("p", { class: "address", text: n.address }),
    el("div", { class: "meter", role: "meter", "aria-label": `${n.name} capacity used`,
      "aria-valuemin": "0", "aria-valuemax": String(n.capacity), "aria-valuenow": String(used) }, bar));
  if (replicas === undefined) {
    const open = el("button", { type: "button", class: "link", "data-replicas-of": n.name, text: "Show replicas" });
    open.addEventListener("click", () => openNode(n.name));
    card.append(el("p", { class: "units", text: `${used} of ${n.capacity} units used · ` }, open));
  } else {
    card.append(
      el("p", { class: "units", text: `${used} of ${n.capacity} units used · ${plural(replicas.length, "replica")}` }),
      el("ul", { class: "replicas", "aria-label": `replicas on ${n.name}` }, ...replicas.map(replicaItem)));
  }
  return card;
}

// "Show N more" under a list cut to a page; `more` renders the next page.
function moreButton(id, hidden, what, more) {
  const button = $(id);
  button.hidden = hidden <= 0;
  button.textContent = `Show more (${hidden} ${what} not shown)`;
  button.onclick = more;
}

function renderNodes(nodes, replicasOf) {
  // Those needing attention first, then by name.
  const order = (n) => (n.status === "online" ? 1 : 0);
  const sorted = [...nodes].sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name));
  const shown = sorted.slice(0, cardsShown);
  $("nodes").replaceChildren(...shown.map((n) => nodeCard(n, replicasOf(n.name))));
  moreButton("more-nodes", sorted.length - shown.length, "nodes", () => {
    cardsShown += CARDS_PER_PAGE;
    if (lastView) lastView();
  });
}

function renderDeployments(deployments) {
  const shown = deployments.slice(0, rowsShown);
  const rows = shown.map((d) => {
    const count = el("td", { text: `${d.actual} / ${d.required}` });
    if (d.actual < d.required) count.append(el("span", { class: "degraded", text: "degraded" }));
    if (d.unplaced) {
      count.append(el("span", { class: "unplaced", text: `${d.unplaced.count} unplaced: ${d.unplaced.reason}` }));
    }
    if (d.crash_looping) {
      const code = d.crash_looping.last_exit_code ?? "none";
      count.append(el("span", { class: "unplaced crash-looping",
        text: `crash looping: ${plural(d.crash_looping.restarts, "failure")} in a row, last exit code ${code}` }));
    }
    const open = el("button", { type: "button", class: "link", "data-open": d.name, text: d.name });
    open.addEventListener("click", () => showDetail(d.name));
    return el("tr", { "data-deployment": d.name, "data-degraded": String(d.actual < d.required) },
      el("th", { scope: "row" }, open),
      el("td", { text: d.image }),
      count,
      el("td", { text: String(d.version) }));
  });
  $("deployments").tBodies[0].replaceChildren(...rows);
  $("no-deployments").hidden = deployments.length > 0;
  moreButton("more-deployments", deployments.length - shown.length, "deployments", () => {
    rowsShown += ROWS_PER_PAGE;
    if (lastView) lastView();
  });
}

// The whole document: every replica on its node's card.
function renderWhole(status) {
  const byNode = replicasByNode(status);
  renderNodes(status.nodes || [], (name) => byNode.get(name) || []);
  renderDeployments(status.deployments || []);
}

// A large cluster: the nodes and deployments without replicas, those of opened nodes.
function renderLarge(nodes, deployments) {
  renderNodes(nodes, (name) => openNodes.get(name));
  renderDeployments(deployments);
}

async function nodeReplicas(name) {
  const response = await api(`/status?node=${encodeURIComponent(name)}`);
  return response.ok ? replicasByNode(await response.json()).get(name) || [] : [];
}

async function openNode(name) {
  openNodes.set(name, await nodeReplicas(name));
  if (lastView) lastView();
}

// What the cluster view shows now: counts first (cheap at any size), then the whole document or
// the large cluster's parts. Marks the first complete render for `cargo xtask bench scale`.
async function renderCluster() {
  const response = await api("/status/summary");
  if (!response.ok) return;
  const summary = await response.json();
  renderSummary(summary);
  if (!isLarge(summary)) {
    openNodes.clear();
    const whole = await api("/status");
    if (!whole.ok) return;
    const status = await whole.json();
    lastView = () => renderWhole(status);
  } else {
    const [nodes, deployments] = await Promise.all([api("/v1/nodes"), api("/v1/deployments")]);
    if (!nodes.ok || !deployments.ok) return;
    const [nodeList, deploymentList] = await Promise.all([nodes.json(), deployments.json()]);
    for (const name of openNodes.keys()) openNodes.set(name, await nodeReplicas(name));
    lastView = () => renderLarge(nodeList, deploymentList);
  }
  lastView();
  if (!document.body.dataset.firstRenderMs) document.body.dataset.firstRenderMs = String(Math.round(performance.now()));
}

// A streamed body cut into messages ending in `separator`, handed over as each chunk
// completes some (a character split across chunks is decoded whole); returns at its end.
async function readMessages(response, separator, onMessages) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const messages = buffer.split(separator);
    buffer = messages.pop();
    if (messages.length > 0) onMessages(messages);
  }
}

// ----- One deployment: its rollout, revisions and actions -----

let detailName = null;
let detailVersion = null;
let detailRollout = null;

async function showDetail(name) {
  const other = name !== detailName;
  detailName = name;
  $("detail").hidden = false;
  $("detail-error").textContent = "";
  if (other) {
    $("log-replica").value = "";
    followLogs();
  }
  await refreshDetail(true);
}

const when = (ms) => (ms ? new Date(ms).toLocaleString() : "-");

// Current replicas, those the deployment is short of, then those that ended, with why.
function renderReplicas(list) {
  const rows = list.map((r) =>
    el("tr", { "data-state": r.state, "data-replica": r.replica === undefined ? "" : String(r.replica) },
      el("td", { text: r.replica === undefined ? "-" : String(r.replica) }),
      el("td", { text: r.node || "-" }),
      el("td", { text: String(r.revision) }),
      el("td", { text: r.health ? `${r.state} (${r.health})` : r.state }),
      el("td", { text: when(r.started_at_ms) }),
      el("td", { text: when(r.ended_at_ms) }),
      el("td", { text: r.reason || "-" })));
  $("replica-history").tBodies[0].replaceChildren(...rows);
  // The log filter offers the replicas that run now; the one chosen stays while it is there.
  const select = $("log-replica");
  const ids = list.filter((r) => r.replica !== undefined && !r.ended_at_ms && r.state !== "lost").map((r) => String(r.replica));
  const offered = [...select.options].slice(1).map((o) => o.value);
  if (ids.join() !== offered.join()) {
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "All" }), ...ids.map((id) => el("option", { value: id, text: `#${id}` })));
    select.value = ids.includes(chosen) || chosen === "" ? chosen : "";
  }
}

// ----- The open deployment's logs: followed, a replica at a time or all, pausable -----

const LOG_LINES = 500;
let logAbort = null;
let logPaused = false;
let logHeld = [];

function logItem(item) {
  if (item.marker) {
    const why = item.error ? `: ${item.error}` : "";
    return el("div", { class: "marker", "data-node": item.node, text: `-- ${item.node} ${item.marker}${why} --` });
  }
  return el("div", { "data-replica": String(item.replica), "data-stream": item.stream, text: `${item.replica}@${item.node} | ${item.line}` });
}

function showLogItems(items) {
  const pane = $("logs");
  const atEnd = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
  pane.append(...items);
  while (pane.children.length > LOG_LINES) pane.firstElementChild.remove();
  if (atEnd) pane.scrollTop = pane.scrollHeight;
}

function setLogState(text) {
  $("log-state").textContent = text;
}

async function followLogs() {
  if (logAbort) logAbort.abort();
  $("logs").replaceChildren();
  logHeld = [];
  if (!detailName) return;
  const abort = new AbortController();
  logAbort = abort;
  const replica = $("log-replica").value;
  const query = `follow=true&tail=100${replica ? `&replica=${encodeURIComponent(replica)}` : ""}`;
  try {
    const response = await api(`${detailPath()}/logs?${query}`, { signal: abort.signal });
    if (!response.ok) return setLogState(`(HTTP ${response.status})`);
    setLogState(logPaused ? "(paused)" : "(live)");
    await readMessages(response, "\n", (lines) => {
      const items = lines.filter((l) => l).map((l) => logItem(JSON.parse(l)));
      if (logPaused) {
        logHeld.push(...items);
        logHeld.splice(0, Math.max(0, logHeld.length - LOG_LINES));
        setLogState(`(paused, ${logHeld.length} new)`);
      } else {
        showLogItems(items);
      }
    });
    if (logAbort === abort) setLogState("(ended)");
  } catch (e) {
    if (e instanceof Unauthorized) return signOut(e.message);
    if (e.name !== "AbortError") setLogState("(disconnected)");
  }
}

$("log-replica").addEventListener("change", () => followLogs());
$("log-pause").addEventListener("click", () => {
  logPaused = !logPaused;
  $("log-pause").textContent = logPaused ? "Resume" : "Pause";
  $("log-pause").setAttribute("aria-pressed", String(logPaused));
  if (!logPaused) {
    showLogItems(logHeld);
    logHeld = [];
  }
  setLogState(logPaused ? "(paused)" : "(live)");
});

async function refreshDetail(fresh = false) {
  if (!detailName) return;
  const [response, revisions, replicas] = await Promise.all([
    api(`/v1/deployments/${encodeURIComponent(detailName)}`),
    api(`/v1/deployments/${encodeURIComponent(detailName)}/revisions`),
    api(`/v1/deployments/${encodeURIComponent(detailName)}/replicas?history=true`),
  ]);
  if (!response.ok) {
    $("detail").hidden = true;
    detailName = null;
    if (logAbort) logAbort.abort();
    return;
  }
  if (replicas.ok) renderReplicas(await replicas.json());
  const d = await response.json();
  detailVersion = d.version;
  detailRollout = d.rollout || null;
  $("detail-name").textContent = `${d.name} (revision ${d.revision})`;
  if (fresh) $("detail-replicas").value = String(d.required);
  const r = detailRollout;
  $("detail-rollout").textContent = r
    ? `Rollout ${r.id}, revision ${r.from_revision} → ${r.to_revision}: ${r.state.replace("_", " ")}, ` +
      `${r.updated} updated, ${r.healthy} healthy of ${d.required}, ${r.failed} failed` +
      (r.reason ? ` (${r.reason})` : "")
    : "No rollout under way.";
  $("detail-rollout").dataset.state = r ? r.state : "none";
  $("detail-pause").hidden = !r || r.state !== "in_progress";
  $("detail-resume").hidden = !r || r.state !== "paused";
  if (revisions.ok) {
    const rows = (await revisions.json()).reverse().map((v) =>
      el("tr", { "data-revision": String(v.revision) },
        el("td", { text: v.restores ? `${v.revision} (restores ${v.restores})` : String(v.revision) }),
        el("td", { text: new Date(v.created_at_ms).toLocaleString() }),
        el("td", { text: v.by || "-" }),
        el("td", { text: v.cause || "-" }),
        el("td", { text: v.template.image })));
    $("revisions").tBodies[0].replaceChildren(...rows);
  }
}

// An admin action on the open deployment; the server's message when it is refused.
async function act(method, path, body) {
  $("detail-error").textContent = "";
  const init = { method };
  if (body) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  try {
    const response = await api(path, init);
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      $("detail-error").textContent = (error.error && error.error.message) || `HTTP ${response.status}`;
    }
  } catch (e) {
    if (e instanceof Unauthorized) return signOut(e.message);
  }
  await refreshDetail(true);
  refreshSoon();
}

const detailPath = () => `/v1/deployments/${encodeURIComponent(detailName)}`;
$("detail-scale").addEventListener("click", () =>
  act("PATCH", detailPath(), { version: detailVersion, replicas: Number($("detail-replicas").value) }));
$("detail-rollback").addEventListener("click", () => act("POST", `${detailPath()}/rollback`, { version: detailVersion }));
$("detail-pause").addEventListener("click", () => act("POST", `${detailPath()}/rollouts/${detailRollout.id}/pause`));
$("detail-resume").addEventListener("click", () => act("POST", `${detailPath()}/rollouts/${detailRollout.id}/resume`));

async function refresh() {
  refreshTimer = null;
  try {
    await renderCluster();
    await refreshDetail();
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
      await readMessages(response, "\n\n", (messages) => {
        for (const message of messages) {
          const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
          if (data) {
            addEvent(JSON.parse(data));
            refreshSoon();
          }
        }
      });
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
  if (logAbort) logAbort.abort();
  detailName = null;
  openNodes.clear();
  lastView = null;
  $("detail").hidden = true;
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
