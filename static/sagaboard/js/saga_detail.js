// The saga page: recolour the graph, update the steps, append events, keep the status and the
// action buttons current, and run operator actions through a dialog without a reload.
// Updates touch only the elements that changed, never the dialog, so a half-typed reason stays.

import { api, setBadge, subscribe, throttle } from "./live.js";

const root = document.getElementById("saga");
const sagaId = root.dataset.sagaId;
let shown = Number(root.dataset.version); // the newest saga version this page shows
const COMPENSATION_STATES = ["compensating", "compensated", "compensation_failed"];

// --- applying state --------------------------------------------------------------------------

function applySaga(saga) {
  root.dataset.status = saga.status;
  setBadge(document.querySelector("#saga-status .badge"), saga.status);
  document.getElementById("saga-current-step").textContent = saga.current_step || "–";
  document.getElementById("saga-version").textContent = saga.version;
  if ("error" in saga) {
    const error = document.getElementById("saga-error");
    error.textContent = saga.error || "";
    error.hidden = !saga.error;
  }
  if ("finished_at" in saga) {
    document.getElementById("saga-finished").textContent = saga.finished_at ? formatTime(saga.finished_at, true) : "–";
  }
  updateActions(saga.status);
}

function updateActions(status) {
  const buttons = [...document.querySelectorAll("#actions button[data-action]")];
  if (!buttons.length) return; // a viewer: no actions at all
  let any = false;
  for (const button of buttons) {
    const valid = button.dataset.validFor.split(" ").includes(status);
    button.hidden = !valid;
    any ||= valid;
  }
  const none = document.getElementById("no-actions");
  none.hidden = any;
  none.textContent = `No operator action applies to a ${status} saga.`;
}

function applyStep(step) {
  const node = document.getElementById(`step-${step.name}`);
  if (node) {
    for (const cls of [...node.classList]) if (cls.startsWith("status-")) node.classList.remove(cls);
    node.classList.add(`status-${step.status}`);
    const texts = node.querySelectorAll("text");
    if (texts.length) texts[texts.length - 1].textContent = step.status.replace("_", " ");
  }
  document.getElementById(`comp-${step.name}`)?.classList.toggle("taken", COMPENSATION_STATES.includes(step.status));
  const row = document.getElementById(`row-step-${step.name}`);
  if (!row) return;
  setBadge(row.querySelector(".step-status .badge"), step.status);
  const body = row.querySelector("tbody");
  for (const attempt of step.attempts || []) {
    const key = `${attempt.kind}-${attempt.number}`;
    const fresh = attemptRow(attempt);
    const old = body.querySelector(`tr[data-attempt="${key}"]`);
    if (!old) {
      body.querySelector("tr.none")?.remove();
      body.append(fresh);
    } else if (old.dataset.sig !== fresh.dataset.sig) {
      const open = [...old.querySelectorAll("details")].map((d) => d.open);
      fresh.querySelectorAll("details").forEach((d, i) => { d.open = !!open[i]; });
      old.replaceWith(fresh);
    }
  }
}

// The same cells as templates/sagas/_attempt.html, built with textContent (never innerHTML).
function attemptRow(a) {
  const tr = document.createElement("tr");
  tr.dataset.attempt = `${a.kind}-${a.number}`;
  tr.dataset.sig = [a.status, a.finished_at, a.error, (a.traceback || "").length, a.http_status].join("|");
  const cell = (text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text !== undefined) td.textContent = text;
    tr.append(td);
    return td;
  };
  cell(`${a.kind} #${a.number}`);
  const badge = document.createElement("span");
  setBadge(badge, a.status);
  cell().append(badge);
  cell(formatTime(a.started_at));
  cell(duration(a.started_at, a.finished_at), "num");
  cell(a.idempotency_key, "mono key");
  const err = cell(undefined, "err");
  if (a.http_status) {
    const http = document.createElement("span");
    http.className = "badge http";
    http.textContent = `HTTP ${a.http_status}`;
    err.append(http, " ");
  }
  if (a.error) {
    const span = document.createElement("span");
    span.className = "error-text";
    span.textContent = a.error;
    err.append(span);
  }
  if (a.response_excerpt) err.append(disclosure("Response", a.response_excerpt));
  if (a.traceback) err.append(disclosure("Traceback", a.traceback));
  return tr;
}

function disclosure(title, text) {
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = title;
  const pre = document.createElement("pre");
  pre.textContent = text;
  details.append(summary, pre);
  return details;
}

function appendEvent(event) {
  if (document.getElementById(`event-${event.seq}`)) return;
  const list = document.getElementById("timeline");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 8;
  const li = document.createElement("li");
  li.id = `event-${event.seq}`;
  li.dataset.seq = event.seq;
  li.className = `etype-${event.type} new`;
  const part = (tag, cls, text) => {
    const el = document.createElement(tag);
    el.className = cls;
    el.textContent = text;
    li.append(el, " ");
  };
  part("span", "seq", `#${event.seq}`);
  part("time", "", formatTime(event.at));
  part("span", "etype", event.type);
  if (event.step) part("span", "mono", event.step);
  if (event.data && Object.keys(event.data).length) part("code", "data", JSON.stringify(event.data));
  const later = [...list.children].find((other) => Number(other.dataset.seq) > event.seq);
  list.insertBefore(li, later || null);
  if (atBottom) list.scrollTop = list.scrollHeight; // follow the tail only if the reader was there
}

// --- a choreography's flow: events observed over expected (only on a choreography's page) -------

const flowRegion = document.getElementById("flow");

// A published event: its edges in the graph turn observed, its row in the flow panel says so at once;
// the rest of the panel (what the flow waits for now, held events, the deadline) follows from the server.
function markObserved(event) {
  const row = document.getElementById(`flow-event-${event.type}`);
  if (!row) return;
  for (const edge of document.querySelectorAll(`#saga-graph g.edge[id^="event-${CSS.escape(event.type)}-"]`)) {
    edge.classList.add("observed");
    edge.classList.remove("expected");
  }
  if (!row.classList.contains("state-observed")) {
    row.className = "flow-event state-observed";
    const badge = row.querySelector(".fstate .badge");
    badge.className = "badge fstate-observed";
    badge.textContent = "✓ observed";
    const time = document.createElement("time");
    time.dateTime = event.at;
    time.textContent = formatTime(event.at);
    row.querySelector(".at").replaceChildren(time);
    row.querySelector(".by").textContent = [event.step, event.data?.source].filter(Boolean).join(" · ") || "–";
  }
  refreshFlowSoon();
}

// Patch the panel from its partial (the same template the page rendered), row by row: the rows stay
// where they are, only their state text and class change, so nothing moves under the cursor.
async function refreshFlow() {
  if (!flowRegion) return;
  const response = await fetch(flowRegion.dataset.partUrl, { credentials: "same-origin" });
  if (!response.ok) return;
  const fresh = document.createElement("template");
  fresh.innerHTML = await response.text();
  const summary = fresh.content.getElementById("flow-summary");
  const shownSummary = document.getElementById("flow-summary");
  if (summary && shownSummary.innerHTML !== summary.innerHTML) shownSummary.innerHTML = summary.innerHTML;
  for (const row of fresh.content.querySelectorAll("tr[data-event]")) {
    const old = document.getElementById(row.id);
    // Observed is for good: an answer computed before the event arrived must not take it back.
    if (!old || old.classList.contains("state-observed") && !row.classList.contains("state-observed")) continue;
    if (old.className !== row.className) old.className = row.className;
    if (old.innerHTML !== row.innerHTML) old.innerHTML = row.innerHTML;
  }
}

const refreshFlowSoon = throttle(refreshFlow, 400);

// --- fetching over REST ----------------------------------------------------------------------

async function refresh() {
  const saga = await api("GET", `/api/sagas/${sagaId}/`);
  if (saga.ok && saga.body.version >= shown) {
    shown = saga.body.version;
    live.setVersion(sagaId, shown);
    applySaga(saga.body);
    saga.body.steps.forEach(applyStep);
    const context = JSON.stringify(saga.body.context, Object.keys(flatKeys(saga.body.context)).sort(), 2);
    const pre = document.getElementById("saga-context");
    if (pre.textContent !== context) pre.textContent = context;
  }
}

async function resync() {
  await refresh();
  // The events missed are the newest: the last page holds them (DRF understands page=last).
  const events = await api("GET", `/api/sagas/${sagaId}/events/?page_size=500&page=last`);
  if (events.ok) (events.body.results || events.body).forEach(appendEvent);
}

// JSON.stringify's key list applies at every depth: collect every key so nested ones survive.
function flatKeys(value, keys = {}) {
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) { keys[k] = true; flatKeys(v, keys); }
  }
  return keys;
}

const refreshSoon = throttle(refresh, 400);

// Open on the newest events: the timeline scrolls, and it follows the tail while the reader is there.
const timeline = document.getElementById("timeline");
timeline.scrollTop = timeline.scrollHeight;

const live = subscribe(`/ws/sagas/${sagaId}/`, {
  saga(msg) {
    if (msg.saga.version < shown) return;
    shown = msg.saga.version;
    applySaga(msg.saga);
    refreshSoon(); // the context and error are not in the message
    if (flowRegion) refreshFlowSoon(); // a finished flow waits for nothing more
  },
  step(msg) { if (msg.version >= shown) applyStep(msg.step); },
  event(msg) {
    appendEvent(msg.event);
    if (flowRegion) {
      if (document.getElementById(`flow-event-${msg.event.type}`)) markObserved(msg.event);
      else if (msg.event.type === "EventReceived" || msg.event.type === "WaitedTooLong") refreshFlowSoon();
    }
  },
  resync() { resync(); if (flowRegion) refreshFlowSoon(); },
}, { versions: { [sagaId]: shown } });

// --- operator actions ------------------------------------------------------------------------

const dialog = document.getElementById("action-dialog");
if (dialog) {
  const form = document.getElementById("action-form");
  const reason = document.getElementById("action-reason");
  const error = document.getElementById("action-error");
  const submit = document.getElementById("action-submit");
  const outcome = document.getElementById("action-outcome");
  let chosen = null;

  for (const button of document.querySelectorAll("#actions button[data-action]")) {
    button.addEventListener("click", () => {
      chosen = button.dataset.action;
      const name = chosen[0].toUpperCase() + chosen.slice(1);
      document.getElementById("action-title").textContent = `${name} this saga`;
      document.getElementById("action-help").textContent = button.dataset.help;
      submit.textContent = name;
      error.hidden = true;
      dialog.showModal();
      reason.focus();
    });
  }
  document.getElementById("action-cancel").addEventListener("click", () => dialog.close());

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = reason.value.trim();
    if (!text) {
      error.textContent = "Write a reason: it goes to the audit log.";
      error.hidden = false;
      reason.focus();
      return;
    }
    submit.disabled = true;
    const result = await api("POST", `/api/sagas/${sagaId}/actions/${chosen}/`, { reason: text });
    submit.disabled = false;
    if (!result.ok) {
      const body = result.body || {};
      error.textContent = body.detail || (body.reason && body.reason[0]) || `The server answered ${result.status}.`;
      error.hidden = false;
      return;
    }
    dialog.close();
    reason.value = "";
    outcome.className = "outcome ok";
    outcome.textContent = `${chosen} accepted: the saga is now ${result.body.status}.`;
    if (result.body.version >= shown) {
      shown = result.body.version;
      applySaga(result.body);
      result.body.steps.forEach(applyStep);
    }
  });
}

// --- formatting ------------------------------------------------------------------------------

function formatTime(iso, withDate = false) {
  if (!iso) return "–";
  const d = new Date(iso);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
  return withDate ? `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${time.slice(0, 8)}` : time;
}

function duration(start, end) {
  if (!start || !end) return "–";
  const seconds = (new Date(end) - new Date(start)) / 1000;
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}
