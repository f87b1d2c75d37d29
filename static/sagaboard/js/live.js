// live.js: owns the websocket. Page modules subscribe; this module reconnects with backoff,
// tracks each saga's `version` and asks the page to refetch over REST when it sees a gap or
// after a reconnect (messages sent while the socket was down are lost, the database is not).

const stateLabel = {
  idle: "live updates off",
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  refused: "live updates refused (log in again)",
};

function showState(state) {
  const el = document.getElementById("live-state");
  if (!el) return;
  el.hidden = false;
  el.dataset.state = state;
  el.textContent = stateLabel[state] || state;
}

/**
 * Subscribe to a stream: `path` is "/ws/sagas/" or "/ws/sagas/<id>/".
 * handlers: { saga(msg), step(msg), event(msg), alert(msg), resync(sagaId|null) }
 *   resync(id) is called on a version gap for that saga; resync(null) after every (re)connect.
 * `versions` (optional) seeds known versions: { [sagaId]: version }.
 * `trackGaps` (default true): only a single-saga stream carries every version, so the list
 * pages, whose stream may coalesce updates, turn gap detection off.
 */
export function subscribe(path, handlers, { versions = {}, trackGaps = true } = {}) {
  const known = new Map(Object.entries(versions));
  let socket = null;
  let attempt = 0;
  let closedByUs = false;

  function versionOf(msg) {
    if (msg.type === "saga") return [msg.saga.id, msg.saga.version];
    if (msg.saga_id && msg.version) return [msg.saga_id, msg.version];
    return [null, null];
  }

  function handle(msg) {
    const [sagaId, version] = versionOf(msg);
    if (sagaId && version) {
      const last = known.get(sagaId);
      if (last !== undefined && version < last) return; // stale: we already know newer
      if (trackGaps && last !== undefined && version > last + 1) {
        known.set(sagaId, version);
        handlers.resync?.(sagaId);
        return; // the refetch brings this change too
      }
      known.set(sagaId, version);
    }
    handlers[msg.type]?.(msg);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    showState(attempt ? "reconnecting" : "connecting");
    socket = new WebSocket(`${scheme}//${location.host}${path}`);
    socket.addEventListener("open", () => {
      attempt = 0;
      showState("live");
      handlers.resync?.(null); // whatever changed between the page's render (or the drop) and now
    });
    socket.addEventListener("message", (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg.type === "sagas") {
        // The overview stream's coalesced batch: each item is a whole `saga` summary.
        for (const saga of msg.sagas || []) handle({ type: "saga", saga });
      } else {
        handle(msg);
      }
    });
    socket.addEventListener("close", (e) => {
      if (closedByUs) return;
      if (e.code === 4401) { showState("refused"); return; }
      attempt += 1;
      showState("reconnecting");
      // Exponential backoff with jitter, capped at 15 s, so a restarted server is not stampeded.
      const delay = Math.min(15000, 500 * 2 ** Math.min(attempt, 5)) * (0.7 + Math.random() * 0.6);
      setTimeout(connect, delay);
    });
  }

  connect();
  return {
    setVersion(sagaId, version) { known.set(sagaId, version); },
    close() { closedByUs = true; socket?.close(); },
  };
}

export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}

/** fetch with the session, the CSRF token and JSON; resolves to { ok, status, body }. */
export async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Accept": "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  return { ok: response.ok, status: response.status, body: data };
}

/** Call `fn` at most once per `ms`, always with the latest arguments, and once more after a burst. */
export function throttle(fn, ms) {
  let timer = null;
  let pending = null;
  return (...args) => {
    if (timer) { pending = args; return; }
    fn(...args);
    timer = setTimeout(function tick() {
      if (pending) { const latest = pending; pending = null; fn(...latest); timer = setTimeout(tick, ms); } else { timer = null; }
    }, ms);
  };
}

/** The text of a status badge: the same markup as templates/sagas/_status.html. */
export function setBadge(badge, status) {
  if (!badge || badge.dataset.status === status) return;
  badge.className = `badge status-${status}`;
  badge.dataset.status = status;
  badge.textContent = status;
}
