"""Live-update latency: from the commit of a step result to the browser's DOM change, at 50 sagas/s.

    .venv/bin/python bench/live.py [--rate 50] [--watch-rate 5] [--duration 30] [--concurrency 4] [--redis-db 12]

Production topology, started by the script itself: a fresh PostgreSQL database on 127.0.0.1
(dropped at the end), Redis db `--redis-db` (flushed) as broker and channel layer
(RedisPubSubChannelLayer), `daphne sagaboard.asgi:application`, `celery -A sagaboard worker -P
prefork -c N`, and `manage.py demo_traffic` starting happy sagas at `rate - watch-rate` per
second. Headless Chromium logs in through the login form and opens a small page on daphne's
origin (the bench's own HTML, put in place of a 404 page; it is not part of the app) that starts `watch-rate`
sagas per second itself through `POST /api/sagas/`, opens `/ws/sagas/<id>/` for each, and on
every message updates the DOM as the saga page does (recolours the step's node on a `step`
message, appends a timeline row on an `event` message), recording `performance.timeOrigin +
performance.now()` right after the change. The watched sagas sleep 0.2 s in their first step so
that their socket is open before their first result; every third fails `charge_payment` once.
The same page also watches the overview (`/ws/sagas/`), where summaries are coalesced.

Latency of a step result = DOM time - the result event's `at` (StepSucceeded, StepFailed,
StepCompensated, CompensationFailed). `at` is stamped when the transaction that records the
result begins, so the figures include that transaction (a few ms) on top of commit → DOM. Same
machine, same clock. The first 3 s are a warm-up and not counted.

Last line: `p50=…ms p99=…ms` (step results on a saga's stream).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = {"StepSucceeded", "StepFailed", "StepCompensated", "CompensationFailed"}
WARM_UP = 3.0
USER = ("bench", "bench-pw")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>live bench</title></head>
<body><h1>live bench</h1><table id="counts"></table><div id="sagas"></div>
<script>
const STEPS = ["reserve_inventory", "charge_payment", "create_shipment", "send_notification"];
const TERMINAL = new Set(["SagaCompleted", "SagaCompensated", "SagaFailed", "SagaSuspended"]);
const csrf = document.cookie.split("; ").find(c => c.startsWith("csrftoken=")).split("=")[1];
const now = () => performance.timeOrigin + performance.now();
// "2025-01-02T03:04:05.123456Z" -> epoch ms with the microseconds kept
const epochMs = (iso) => {
  const m = iso.match(/^(.*\\.)(\\d{3})(\\d*)(Z|[+-].*)$/);
  if (!m) return Date.parse(iso);
  return Date.parse(m[1] + m[2] + m[4]) + Number("0." + (m[3] || "0")) ;
};
window.bench = {results: [], overview: [], overviewMessages: 0, watched: 0, opened: 0, finished: 0,
                 outOfOrder: 0, errors: []};

function watch(n) {
  const context = {sleep: {reserve_inventory: 0.2}};
  if (n % 3 === 0) context.fail = {charge_payment: 1};
  fetch("/api/sagas/", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
                        body: JSON.stringify({definition: "order-fulfilment", correlation_id: `live-${n}-${Date.now()}`,
                                              context})})
    .then(r => r.ok ? r.json() : r.text().then(t => Promise.reject(`POST /api/sagas/ ${r.status}: ${t.slice(0, 200)}`)))
    .then(saga => follow(saga.id)).catch(e => bench.errors.push(String(e)));
  bench.watched++;
}

function follow(id) {
  const box = document.createElement("section");
  box.innerHTML = `<h2>${id} <span class="status">pending</span></h2><svg>${STEPS.map(s =>
    `<g id="step-${s}" class="node status-pending"><text>${s}</text></g>`).join("")}</svg><ol class="timeline"></ol>`;
  document.getElementById("sagas").prepend(box);
  const timeline = box.querySelector(".timeline");
  let version = 0;
  const ws = new WebSocket(`ws://${location.host}/ws/sagas/${id}/`);
  ws.onopen = () => bench.opened++;
  ws.onclose = (e) => { if (e.code !== 1000 && e.code !== 1005) bench.errors.push(`socket closed ${e.code}`); };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    const v = m.type === "saga" ? m.saga.version : m.version;
    if (v < version) bench.outOfOrder++;
    version = Math.max(version, v);
    if (m.type === "saga") {
      box.querySelector(".status").textContent = m.saga.status;
    } else if (m.type === "step") {
      const node = box.querySelector(`#step-${m.step.name}`);
      node.setAttribute("class", `node status-${m.step.status}`);
    } else if (m.type === "event") {
      const row = document.createElement("li");
      row.textContent = `${m.event.seq} ${m.event.type} ${m.event.step || ""}`;
      timeline.append(row);
      bench.results.push({type: m.event.type, at: epochMs(m.event.at), dom: now()});
      if (TERMINAL.has(m.event.type)) { bench.finished++; ws.close(); box.remove(); }
    }
  };
}

function overview() {
  const counts = {};
  const latest = {};
  const ws = new WebSocket(`ws://${location.host}/ws/sagas/`);
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    const batch = m.type === "saga" ? [m.saga] : m.type === "sagas" ? m.sagas : [];
    if (!batch.length) return;
    bench.overviewMessages++;
    const fresh = batch.filter(s => !latest[s.id] || latest[s.id].version < s.version);
    for (const s of fresh) {
      if (latest[s.id]) counts[latest[s.id].status]--;
      counts[s.status] = (counts[s.status] || 0) + 1;
      latest[s.id] = s;
    }
    document.getElementById("counts").innerHTML =
      Object.entries(counts).map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("");
    const dom = now();
    for (const s of fresh) bench.overview.push({at: epochMs(s.updated_at), dom});
  };
}

window.startBench = (rate, seconds) => {
  overview();
  let n = 0;
  const timer = setInterval(() => watch(n++), 1000 / rate);
  setTimeout(() => clearInterval(timer), seconds * 1000);
};
</script></body></html>
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50, help="sagas started per second in all (default 50)")
    parser.add_argument("--watch-rate", type=float, default=5, help="of which the browser starts and watches")
    parser.add_argument("--duration", type=float, default=30, help="seconds of traffic (default 30)")
    parser.add_argument("--concurrency", type=int, default=4, help="celery prefork processes (default 4)")
    parser.add_argument("--redis-db", type=int, default=12)
    args = parser.parse_args()

    database = f"bench_live_{secrets.token_hex(3)}"
    psql(f'CREATE DATABASE "{database}"')
    env = {**os.environ, "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{database}",
           "REDIS_URL": f"redis://127.0.0.1:6379/{args.redis_db}", "DJANGO_SETTINGS_MODULE": "sagaboard.settings",
           "SAGABOARD_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen] = []
    try:
        manage = [sys.executable, "manage.py"]
        run(manage + ["migrate", "-v0"], env)
        run(manage + ["loaddemo"], env)
        run(manage + ["createuser", USER[0], "--role", "operator", "--password", USER[1]], env)
        flush_redis(env["REDIS_URL"])
        port = free_port()
        processes.append(spawn([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "sagaboard.asgi:application"],
                               env))
        processes.append(spawn([sys.executable, "-m", "celery", "-A", "sagaboard", "worker", "-P", "prefork",
                                "-c", str(args.concurrency), "--loglevel=error", "-n", f"live-{secrets.token_hex(3)}@%h"],
                               env))
        wait_for_port(port)
        report = measure(args, env, port, processes, database)
    finally:
        for process in processes:
            stop(process)
        psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(report)


def measure(args, env: dict, port: int, processes: list[subprocess.Popen], database: str) -> str:
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", USER[0])
        page.fill("#id_password", USER[1])
        page.click("button[type=submit]")
        page.wait_for_load_state()
        if "/accounts/login/" in page.url:
            raise SystemExit(f"could not log in as {USER[0]}: still on {page.url}")
        # The page is not part of the app: load any URL of daphne's origin (a 404) and replace its content,
        # so that the page keeps the origin and the cookie (a routed page fails Chromium's local network checks).
        page.goto(f"{base}/bench-live/")
        page.set_content(PAGE)

        traffic = max(0.0, args.rate - args.watch_rate)
        if traffic:
            processes.append(spawn([sys.executable, "manage.py", "demo_traffic", "--rate", str(traffic), "--duration",
                                    str(args.duration), "--failure-mix", "none"], env))
        started = time.time()
        psql("SELECT 1", database)  # warm: the throughput query below must not wait on a cold start
        page.evaluate("([rate, seconds]) => startBench(rate, seconds)", [args.watch_rate, args.duration])
        deadline = time.monotonic() + args.duration + 30
        while time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            state = page.evaluate("({watched: bench.watched, finished: bench.finished})")
            if time.time() - started > args.duration and state["finished"] >= state["watched"]:
                break
        bench = page.evaluate("bench")
        browser.close()

    counted_from = (started + WARM_UP) * 1000
    results = [r["dom"] - r["at"] for r in bench["results"] if r["type"] in RESULTS and r["at"] >= counted_from]
    overview = [r["dom"] - r["at"] for r in bench["overview"] if r["at"] >= counted_from]
    if not results:
        raise SystemExit(f"no step results measured: {json.dumps({k: v for k, v in bench.items() if k != 'results'})}")
    print(f"watched sagas: {bench['watched']} started, {bench['opened']} sockets, {bench['finished']} finished; "
          f"{len(results)} step results measured; version order violations: {bench['outOfOrder']}; "
          f"errors: {bench['errors'][:3]}")
    print(f"overview (/ws/sagas/, coalesced): {bench['overviewMessages']} messages in {args.duration:.0f} s, "
          f"{len(overview)} summaries; summary commit -> DOM p50={percentile(overview, 50):.1f}ms "
          f"p99={percentile(overview, 99):.1f}ms")
    end = started + args.duration
    rows = psql(f"SELECT count(*), count(*) FILTER (WHERE finished_at <= to_timestamp({end})), "
                f"(SELECT count(*) FROM sagas_sagaevent WHERE type IN ('StepSucceeded', 'StepFailed') "
                f"AND at <= to_timestamp({end})) FROM sagas_saga", database)
    total, in_time, results_in_time = (int(x) for x in rows.split("|"))
    print(f"throughput during the {args.duration:.0f} s of traffic: {total} sagas started ({total / args.duration:.1f}/s), "
          f"{in_time} finished, {results_in_time / args.duration:.1f} step results/s "
          f"(a saga is 4 step results: keeping up at {args.rate:.0f} sagas/s takes {4 * args.rate:.0f}/s)")
    print(f"step result commit -> DOM (n={len(results)}): min={min(results):.1f}ms "
          f"mean={statistics.fmean(results):.1f}ms max={max(results):.1f}ms")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return f"p50={percentile(results, 50):.1f}ms p99={percentile(results, 99):.1f}ms"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- processes ----------------------------------------------------------------------------------

def run(command: list[str], env: dict) -> None:
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def spawn(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr,
                            start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process alone: a Celery worker then lets its children finish their tasks (a
    SIGTERM to the whole group killed them mid-task, and the worker logged each as lost)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
    process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"daphne did not listen on {port} within {timeout} s") from None
            time.sleep(0.1)


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "root", "-d", database, "-qAtc", sql], check=True,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
