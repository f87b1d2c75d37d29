// The alerts page: operators acknowledge an alert without a reload; new alerts are announced.

import { api, subscribe } from "./live.js";

const table = document.getElementById("alert-table");

table.addEventListener("click", async (e) => {
  const button = e.target.closest("button.ack");
  if (!button) return;
  button.disabled = true;
  const result = await api("POST", `/api/alerts/${button.dataset.alert}/acknowledge/`);
  const cell = button.closest("td");
  if (result.ok) {
    const at = result.body.acknowledged_at ? new Date(result.body.acknowledged_at).toISOString().slice(5, 19).replace("T", " ") : "";
    cell.textContent = `by ${result.body.acknowledged_by || "you"} at ${at}`;
    cell.setAttribute("tabindex", "-1");
    cell.focus();
  } else {
    button.disabled = false;
    const note = document.createElement("span");
    note.className = "error-text";
    note.textContent = ` ${result.body?.detail || `failed (${result.status})`}`;
    cell.append(note);
  }
});

subscribe("/ws/sagas/", {
  alert(msg) {
    if (!document.getElementById(`alert-${msg.alert.id}`)) document.getElementById("new-alerts").hidden = false;
  },
}, { trackGaps: false });
