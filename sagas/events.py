"""The only code that publishes to the channel layer: typed messages, sent after commit.

Groups: `sagas` (every saga change, for the overview and list pages) and `saga-<id>` (one saga's
changes, its steps and its events). The database is the source of truth; these messages only
tell browsers what to fetch or recolour, and carry the saga `version` so a client that sees a
gap refetches over REST.

Sync code (workers, views) never waits for Redis: messages are handed to one event loop per
process running in a background thread. With the in-memory layer (embedded mode) the loop must
be the web server's own, which the first websocket consumer registers with `bind_loop`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

ALL_SAGAS = "sagas"
ALERTS = "alerts"


def saga_group(saga_id) -> str:
    return f"saga-{saga_id}"


# --- the messages -----------------------------------------------------------------------------

def saga_message(saga) -> dict:
    return {"type": "saga", "saga": {
        "id": str(saga.pk), "definition": saga.definition_name, "correlation_id": saga.correlation_id,
        "status": str(saga.status), "current_step": saga.current_step, "version": saga.version,
        "updated_at": saga.updated_at.isoformat() if saga.updated_at else None,
    }}


def step_message(saga, step) -> dict:
    from .api.serializers import StepSerializer

    return {"type": "step", "saga_id": str(saga.pk), "version": saga.version, "step": StepSerializer(step).data}


def event_message(saga, event) -> dict:
    from .api.serializers import EventSerializer

    return {"type": "event", "saga_id": str(saga.pk), "version": saga.version,
            "event": EventSerializer(event).data}


def alert_message(alert) -> dict:
    from .api.serializers import AlertSerializer

    return {"type": "alert", "alert": AlertSerializer(alert).data}


# --- publishing after commit -------------------------------------------------------------------

def publish_after_commit(saga, steps: Iterable, events: Iterable) -> None:
    """After the current transaction commits, tell the saga's watchers what changed."""
    step_ids = [step.pk for step in steps]
    summary = saga_message(saga)  # now: `saga` holds what this transaction wrote
    tail = [event_message(saga, event) for event in events]

    def publish() -> None:
        from .models import SagaStep

        messages = [summary]
        if step_ids:
            for step in SagaStep.objects.filter(pk__in=step_ids).prefetch_related("attempts"):
                messages.append(step_message(saga, step))
        send(saga_group(saga.pk), messages + tail)
        send(ALL_SAGAS, [summary])

    transaction.on_commit(publish)


def alert_after_commit(alert) -> None:
    transaction.on_commit(lambda: send(ALERTS, [alert_message(alert)]))


def send(group: str, messages: list[dict]) -> None:
    """Hand messages for `group` to the publishing loop; never blocks, never raises."""
    if not messages:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _loop_for(layer)
    if loop is None:
        return  # embedded mode before any browser connected: nobody to tell
    payload = [{"type": "forward", "message": message} for message in messages]
    asyncio.run_coroutine_threadsafe(_send_all(layer, group, payload), loop)


async def _send_all(layer, group: str, payload: list[dict]) -> None:
    try:
        for message in payload:
            await layer.group_send(group, message)
    except Exception:  # noqa: BLE001 (a lost notification must never break the engine)
        log.exception("publishing to %s failed", group)


# --- the loop ---------------------------------------------------------------------------------

_bound_loop: asyncio.AbstractEventLoop | None = None
_own_loop: asyncio.AbstractEventLoop | None = None
_own_pid = 0  # a forked worker child must not reuse its parent's loop: its thread did not survive
_lock = threading.Lock()


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Publish on the web server's loop (needed by the in-memory layer, whose queues live there)."""
    global _bound_loop
    _bound_loop = loop


def _loop_for(layer) -> asyncio.AbstractEventLoop | None:
    if isinstance(layer, InMemoryChannelLayer):
        return _bound_loop
    return _background_loop()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _own_loop, _own_pid
    with _lock:
        if _own_loop is None or _own_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="sagaboard-publisher", daemon=True).start()
            _own_loop, _own_pid = loop, os.getpid()
        return _own_loop
