// The saga list: rows on this page change status in place; sagas that now belong on this page
// (new ones, or older ones that came to match the filters) are announced, not inserted, so
// nothing moves under the reader's cursor.

import { setBadge, subscribe } from "./live.js";

const params = new URLSearchParams(location.search);
const notice = document.getElementById("new-sagas");
const showNew = document.getElementById("show-new");
const rows = () => document.querySelectorAll("#saga-table tbody tr[id^='saga-']");
const versions = {};
for (const row of rows()) versions[row.id.slice(5)] = Number(row.dataset.version);
const firstPage = !params.get("page") || params.get("page") === "1";
const announced = new Set();

// The same filters as sagas/filters.py, on a saga's summary.
const ID_PREFIX = /^[0-9a-f]{4}[0-9a-f-]{0,32}$/;

function matchesFilters(saga) {
  const statuses = (params.get("status") || "").split(",").filter(Boolean);
  if (statuses.length && !statuses.includes(saga.status)) return false;
  if (params.get("definition") && saga.definition !== params.get("definition")) return false;
  if (params.get("correlation_id") && saga.correlation_id !== params.get("correlation_id")) return false;
  const search = (params.get("search") || "").trim().toLowerCase();
  if (search) {
    const inCorrelation = saga.correlation_id.toLowerCase().includes(search);
    const idStart = ID_PREFIX.test(search) && saga.id.startsWith(search);
    if (!inCorrelation && !idStart) return false;
  }
  return true;
}

/** Whether a saga this page does not show would be on it if it were loaded now. */
function belongsHere(saga) {
  if (!firstPage || !saga.created_at || !matchesFilters(saga)) return false;
  const shown = rows(); // the page lists the newest created first
  if (shown.length < Number(document.getElementById("saga-table").dataset.pageSize)) return true;
  const oldest = shown[shown.length - 1].dataset.created;
  return Date.parse(saga.created_at) >= Date.parse(oldest);
}

const filtered = ["status", "definition", "correlation_id", "search"].some((name) => params.get(name));

function announce(saga) {
  announced.add(saga.id);
  const n = announced.size;
  const sagas = `${n} ${filtered ? "new or changed " : "new "}saga${n > 1 ? "s" : ""}`;
  const them = n > 1 ? "them" : "it";
  showNew.textContent = filtered ? `${sagas} now match${n > 1 ? "" : "es"} these filters: show ${them}` : `${sagas} started: show ${them}`;
  notice.hidden = false;
}

function updateRow(saga) {
  const row = document.getElementById(`saga-${saga.id}`);
  if (!row) {
    if (!announced.has(saga.id) && belongsHere(saga)) announce(saga);
    return;
  }
  if (Number(row.dataset.version) >= saga.version) return;
  row.dataset.version = saga.version;
  const badge = row.querySelector(".status-cell .badge");
  if (badge.dataset.status !== saga.status) {
    setBadge(badge, saga.status);
    row.classList.remove("flash");
    void row.offsetWidth; // restart the highlight animation
    row.classList.add("flash");
  }
  row.querySelector(".step-cell").textContent = saga.current_step || "–";
  if (saga.updated_at) {
    const time = row.querySelector(".updated-cell time");
    time.dateTime = saga.updated_at;
    time.textContent = new Date(saga.updated_at).toISOString().slice(11, 19);
  }
}

showNew.addEventListener("click", () => location.reload());

subscribe("/ws/sagas/", {
  saga(msg) { updateRow(msg.saga); },
}, { versions, trackGaps: false });
