// The saga list: rows on this page change status in place; new sagas are announced, not
// inserted, so nothing moves under the reader's cursor.

import { setBadge, subscribe } from "./live.js";

const notice = document.getElementById("new-sagas");
const versions = {};
for (const row of document.querySelectorAll("#saga-table tbody tr[id^='saga-']")) {
  versions[row.id.slice(5)] = Number(row.dataset.version);
}
const firstPage = !new URLSearchParams(location.search).get("page") || new URLSearchParams(location.search).get("page") === "1";

function updateRow(saga) {
  const row = document.getElementById(`saga-${saga.id}`);
  if (!row) {
    // A saga this page does not show: a new one is worth a notice on the first page.
    if (firstPage && saga.version <= 2) notice.hidden = false;
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

document.getElementById("show-new").addEventListener("click", () => location.reload());

subscribe("/ws/sagas/", {
  saga(msg) { updateRow(msg.saga); },
}, { versions, trackGaps: false });
