// The overview: when sagas or alerts change, fetch the live region again (counts, throughput,
// failure inbox), at most once a second however many sagas change: one request per burst.

import { subscribe, throttle } from "./live.js";

const region = document.getElementById("overview-live");

async function reload() {
  const response = await fetch(region.dataset.partUrl, { credentials: "same-origin" });
  if (!response.ok) return;
  const html = await response.text();
  // Keep keyboard focus where it was: remember the focused link by its href.
  const focused = region.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
  const scroll = region.querySelector(".inbox-list")?.scrollTop || 0;
  region.innerHTML = html;
  const list = region.querySelector(".inbox-list");
  if (list) list.scrollTop = scroll;
  if (focused) region.querySelector(`a[href="${CSS.escape(focused)}"]`)?.focus();
}

const reloadSoon = throttle(reload, 1000);

subscribe("/ws/sagas/", {
  saga: reloadSoon,
  alert: reloadSoon,
  resync: reloadSoon,
}, { trackGaps: false });

// The throughput chart moves on with the clock even when nothing happens.
setInterval(reloadSoon, 30000);
