"""The only code that publishes to the channel layer: typed messages, sent after commit.

Groups and what they carry (CONTRACT.md section 5):

- `saga-<id>`: one saga's changes, in order, every one of them: `{"type": "saga", "saga": {...}}`,
  then `{"type": "step", "saga_id", "version", "step": {...}}` for each step the change touched (the
  step JSON of the API, with its attempts), then `{"type": "event", "saga_id", "version", "event":
  {seq, type, step, at, data}}` for each event it appended.
- `sagas`: every saga's summary, for the overview and list pages. Under bursts these are
  coalesced per process: the first change after a quiet spell goes out at once as the contract's
  `{"type": "saga", "saga": {...}}`; changes within the next `OVERVIEW_WINDOW` seconds are kept
  (the latest summary per saga id) and go out together when the window ends, as
  `{"type": "sagas", "sagas": [{...}, ...]}` (an extension: each item has the shape of the
  `saga` message's `saga`), or as a plain `saga` message when only one saga changed. So each
  publishing process sends at most one overview message per window, however many sagas change.
- `alerts`: `{"type": "alert", "alert": {...}}` when an alert opens or closes.

Each `saga` summary carries the contract's fields and `created_at` (an extension: the list page
uses it to tell whether a saga it does not show belongs on it).

The database is the source of truth; these messages only tell browsers what changed, and carry
the saga `version`. On a saga's own group the versions arrive in order, and a client that sees a
gap refetches over REST. On the overview, coalescing skips versions by design, and each process
coalesces on its own, so an older summary may arrive after a newer one: a client keeps, per
saga, the summary with the highest version (each summary is whole; no refetch needed).

Sync code (workers, views) never waits for the channel layer. Each process hands messages to a
publishing thread of its own (sagas/publisher.py), which sends every group waiting at once: with
channels_redis's pub/sub layer as one pipelined round trip with a blocking client
(sagas/redis_publish.py), with any other layer through its `group_send` on an event loop, as one
channel-layer message per group (`{"type": "forward", "messages": [...]}`, which the consumer
writes out one by one). One process's messages to a group keep their order, a forked worker
child gets a publisher of its own, and a full queue or a failing layer loses notifications,
never engine work: each send has a timeout, and after a failure messages are dropped for a
moment instead of each waiting its turn to fail (clients that see the gap in `version` refetch
over REST). With the in-memory layer (embedded mode) the loop must be the web server's own,
which the first websocket consumer registers with `bind_loop`; before that nobody is listening
and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from .messages import alert_message, event_message, saga_message, step_message
from .publisher import LoopSender, Publisher
from .redis_publish import layer_sender

log = logging.getLogger(__name__)

ALL_SAGAS = "sagas"
ALERTS = "alerts"

OVERVIEW_WINDOW = 0.15  # seconds: at most one overview message per process per window
QUEUE_LIMIT = 20_000  # messages waiting to be sent; beyond that they are dropped (and counted)
SEND_TIMEOUT = 5.0  # seconds for one group_send: a hung Redis must not stall every later message
PAUSE_AFTER_FAILURE = 1.0  # seconds: after a failed send, drop messages instead of trying each in turn


def saga_group(saga_id) -> str:
    return f"saga-{saga_id}"


# --- publishing after commit -------------------------------------------------------------------

def publish_after_commit(saga, steps: Iterable, events: Iterable, attempts: Iterable = ()) -> None:
    """After the current transaction commits, tell the saga's watchers what changed.

    `steps` are the step rows as this transaction wrote them, and `attempts` the attempt rows it
    wrote. A step whose attempts are all among them (its first call) needs no query; the attempts
    of the others are read after commit, in one query. The messages are built then too, so that
    nothing here lengthens the transaction that holds the saga's row lock.
    """
    summary = saga_message(saga)  # now: `saga` holds what this transaction wrote
    saga_id, version = saga.pk, saga.version
    steps, events = sorted(steps, key=lambda step: step.index), list(events)
    known: dict[int, list] = {}
    for attempt in attempts:
        known.setdefault(attempt.step_id, []).append(attempt)
    attempts_of = {step.pk: known.get(step.pk, []) for step in steps
                   if len(known.get(step.pk, ())) == step.action_attempts + step.compensation_attempts}

    def publish() -> None:
        from .models import StepAttempt

        unknown = [step.pk for step in steps if step.pk not in attempts_of]
        if unknown:
            for attempt in StepAttempt.objects.filter(step_id__in=unknown).order_by("started_at", "id"):
                attempts_of.setdefault(attempt.step_id, []).append(attempt)
        messages = [summary]
        messages += [step_message(saga_id, version, step, sorted(attempts_of.get(step.pk, ()), key=_attempt_order))
                     for step in steps]
        messages += [event_message(saga_id, version, event) for event in events]
        group = saga_group(saga_id)

        def hand_over(publisher) -> None:
            publisher.enqueue(group, messages)
            publisher.coalesce(summary["saga"])

        _submit(hand_over)

    # robust: a failure to publish is logged and must not keep later callbacks (the next step's
    # enqueue) from running.
    transaction.on_commit(publish, robust=True)


def _attempt_order(attempt) -> tuple:
    return attempt.started_at, attempt.pk


def alert_after_commit(alert) -> None:
    transaction.on_commit(lambda: send(ALERTS, [alert_message(alert)]), robust=True)


def send(group: str, messages: list[dict]) -> None:
    """Hand messages for `group` to the publishing loop, to be sent in order; never blocks, never raises."""
    if messages:
        _submit(lambda publisher: publisher.enqueue(group, messages))


def send_summary(summary: dict) -> None:
    """Hand a `saga` summary message to the overview (`sagas` group), coalesced per process."""
    _submit(lambda publisher: publisher.coalesce(summary["saga"]))


def wait_until_sent(timeout: float = 5.0) -> bool:
    """Block until this process's publisher has sent everything handed to it (for short-lived
    processes such as commands and tests); True if it did within `timeout`."""
    layer = get_channel_layer()
    publisher = None if layer is None else _publishers.get((os.getpid(), layer))
    if publisher is None:
        return True
    deadline = time.monotonic() + timeout
    while not publisher.idle():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _submit(handoff) -> None:
    try:
        layer = get_channel_layer()
        if layer is not None:
            handoff(publisher_for(layer))
    except Exception:  # noqa: BLE001 (a lost notification must never break the engine)
        log.exception("could not hand a live update to the publisher")


# --- the publisher and its loop -----------------------------------------------------------------

_bound_loop: asyncio.AbstractEventLoop | None = None
_own_loop: asyncio.AbstractEventLoop | None = None
_own_pid = 0  # a forked worker child must not reuse its parent's loop: its thread did not survive
_publishers: dict[tuple[int, object], Publisher] = {}
_lock = threading.Lock()


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Publish on the web server's loop (needed by the in-memory layer, whose queues live there)."""
    global _bound_loop
    _bound_loop = loop


def publisher_for(layer) -> Publisher:
    """This process's publisher for `layer` (a forked child starts its own: the parent's thread did not survive)."""
    key = (os.getpid(), layer)
    if key not in _publishers:
        with _lock:
            if key not in _publishers:
                sender = layer_sender(layer, SEND_TIMEOUT) or LoopSender(layer, lambda: _loop_for(layer), SEND_TIMEOUT)
                _publishers[key] = Publisher(
                    sender, overview_group=ALL_SAGAS, window=OVERVIEW_WINDOW, queue_limit=QUEUE_LIMIT,
                    pause_after_failure=PAUSE_AFTER_FAILURE, complain=_complain)
    return _publishers[key]


def _loop_for(layer) -> asyncio.AbstractEventLoop | None:
    if isinstance(layer, InMemoryChannelLayer):
        return _bound_loop
    return _background_loop()


_last_complaint = 0.0


def _complain(message: str, count: int, exc_info: bool = False) -> None:
    global _last_complaint
    now = time.monotonic()
    if now - _last_complaint > 30:  # once per 30 s, not once per message
        _last_complaint = now
        log.warning(message, count, exc_info=exc_info)


def _background_loop() -> asyncio.AbstractEventLoop:
    global _own_loop, _own_pid
    if _own_loop is not None and _own_pid == os.getpid():
        return _own_loop
    with _lock:
        if _own_loop is None or _own_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="sagaboard-publisher-loop", daemon=True).start()
            _own_loop, _own_pid = loop, os.getpid()
        return _own_loop


def _after_fork_in_child() -> None:
    """A forked child (a Celery prefork worker) starts afresh: the parent's threads did not survive."""
    global _own_loop, _own_pid, _lock
    _own_loop, _own_pid, _lock = None, 0, threading.Lock()
    _publishers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
