"""The publisher (sagas/events.py) on the real Redis channel layer: order, coalescing, forks, failures.

A listener joins a group on a loop of its own, as daphne would, and records what arrives. Group
names are unique per test: Redis pub/sub is shared by every db number, so other suites running
beside this one publish to the same `sagas` group (the overview tests only look at their own ids).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import socket
import statistics
import threading
import time
import uuid

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from sagas import events, services
from sagas.models import Saga
from tests.conftest import wait_for


@pytest.fixture(autouse=True)
def redis_layer():
    if settings.EMBEDDED:
        pytest.fail("these tests need REDIS_URL (make test sets it)")


class Listener:
    """A channel in `group` on the project's channel layer, receiving on an event loop of its own."""

    def __init__(self, group: str):
        self.group = group
        self.layer = get_channel_layer()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.received: queue.Queue[tuple[float, dict]] = queue.Queue()
        self.channel = self._run(self.layer.new_channel())
        self._run(self.layer.group_add(group, self.channel))
        self.task = asyncio.run_coroutine_threadsafe(self._receive(), self.loop)

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _receive(self) -> None:
        while True:
            batch = await self.layer.receive(self.channel)
            for message in batch["messages"]:  # what the consumer writes to the socket, one by one
                self.received.put((time.monotonic(), message))

    def get(self, timeout: float = 5) -> dict:
        return self.received.get(timeout=timeout)[1]

    def drain(self, quiet: float = 1.0, until=None, timeout: float = 10) -> list[tuple[float, dict]]:
        """Everything that arrives until nothing has for `quiet` seconds (a loaded 2-core machine can
        hold the publishing thread for half a second); with `until`, also until `until(received)`
        holds or `timeout` seconds pass."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.received.get(timeout=quiet))
            except queue.Empty:
                if until is None or until(got) or time.monotonic() > deadline:
                    return got

    def close(self) -> None:
        self.task.cancel()
        self._run(self.layer.group_discard(self.group, self.channel))
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def listen():
    listeners: list[Listener] = []

    def make(group: str) -> Listener:
        listeners.append(Listener(group))
        return listeners[-1]

    yield make
    for listener in listeners:
        listener.close()


def summary(saga_id: str, version: int, status: str = "running") -> dict:
    return {"type": "saga", "saga": {"id": saga_id, "definition": "d", "correlation_id": saga_id, "status": status,
                                     "current_step": "", "version": version, "updated_at": None}}


def quiet_overview() -> None:
    """Let this process's overview window close, so that the next change is a leading one."""
    assert events.wait_until_sent()
    time.sleep(events.OVERVIEW_WINDOW * 2)


def overview_items(received: list[tuple[float, dict]], ids: set[str]) -> list[tuple[float, dict, list[dict]]]:
    found = []
    for at, message in received:
        batch = [message["saga"]] if message["type"] == "saga" else message.get("sagas", [])
        mine = [s for s in batch if s["id"] in ids]
        if mine:
            found.append((at, message, mine))
    return found


# --- one saga's group: everything, in order ----------------------------------------------------

def test_messages_for_one_saga_arrive_all_and_in_the_order_handed_over(listen):
    group = events.saga_group(uuid.uuid4())
    listener = listen(group)

    def hand_over(thread: int) -> None:
        for n in range(250):
            events.send(group, [{"type": "event", "thread": thread, "n": n}])

    threads = [threading.Thread(target=hand_over, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = [message for _, message in listener.drain()]

    assert len(got) == 1000
    for t in range(4):
        assert [m["n"] for m in got if m["thread"] == t] == list(range(250))


def test_handing_over_never_waits_for_redis(listen):
    group = events.saga_group(uuid.uuid4())
    listener = listen(group)
    started = time.perf_counter()
    for n in range(2000):
        events.send(group, [{"type": "event", "n": n}])
    handed_over = time.perf_counter() - started

    assert handed_over < 0.5, f"2000 hand-overs took {handed_over:.3f} s"
    assert len(listener.drain()) == 2000


def test_other_layers_get_the_same_messages_through_group_send_on_the_bound_loop():
    in_memory = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=in_memory):
        group = events.saga_group(uuid.uuid4())
        events.send(group, [{"type": "event", "n": "before any websocket"}])  # nobody to tell yet: dropped
        assert events.wait_until_sent()
        listener = Listener(group)  # the in-memory layer's queues live on the web server's loop
        events.bind_loop(listener.loop)
        try:
            for n in range(100):
                events.send(group, [{"type": "event", "n": n}])
            assert [message["n"] for _, message in listener.drain()] == list(range(100))
        finally:
            events.bind_loop(None)
            listener.close()


# --- the overview: the first change at once, then coalesced ------------------------------------

def test_the_first_overview_change_after_a_quiet_spell_goes_out_at_once(listen):
    listener = listen(events.ALL_SAGAS)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    quiet_overview()
    events.send_summary(summary(first, 1))
    events.send_summary(summary(second, 1))  # right behind it: waits for the window
    items = overview_items(listener.drain(), {first, second})

    assert [message for _, message, _ in items] == [summary(first, 1), summary(second, 1)], \
        "the leading change alone, in the contract's `saga` message; then the next one"
    assert items[1][0] - items[0][0] > events.OVERVIEW_WINDOW * 0.7, "the first did not wait for the window"


def test_a_burst_of_overview_changes_is_coalesced_to_the_latest_summary_per_saga(listen):
    listener = listen(events.ALL_SAGAS)
    ids = [str(uuid.uuid4()) for _ in range(100)]
    quiet_overview()
    for version in range(1, 6):
        for saga_id in ids:
            events.send_summary(summary(saga_id, version, "completed" if version == 5 else "running"))
    items = overview_items(listener.drain(), set(ids))

    assert len(items) <= 3, f"{len(items)} messages for 500 changes"
    newest: dict[str, dict] = {}
    for _, _, mine in items:
        for saga in mine:
            if saga["version"] > newest.get(saga["id"], {"version": 0})["version"]:
                newest[saga["id"]] = saga
    assert {s["id"]: (s["version"], s["status"]) for s in newest.values()} == {i: (5, "completed") for i in ids}
    batch = items[-1][1]
    assert batch["type"] == "sagas" and len(batch["sagas"]) == len({s["id"] for s in batch["sagas"]})


def test_an_older_summary_does_not_replace_a_newer_one_waiting_in_the_window(listen):
    listener = listen(events.ALL_SAGAS)
    leader, saga_id = str(uuid.uuid4()), str(uuid.uuid4())
    quiet_overview()
    events.send_summary(summary(leader, 1))  # opens the window
    events.send_summary(summary(saga_id, 7, "completed"))
    events.send_summary(summary(saga_id, 6, "running"))  # late, from an older transaction
    items = overview_items(listener.drain(), {saga_id})

    assert [(s["version"], s["status"]) for _, _, mine in items for s in mine] == [(7, "completed")]


def test_a_steady_stream_of_changes_gets_at_most_one_overview_message_per_window(listen):
    listener = listen(events.ALL_SAGAS)
    ids = {str(uuid.uuid4()) for _ in range(600)}
    quiet_overview()
    started = time.monotonic()
    for saga_id in ids:  # 600 changes over about 1.2 s, i.e. 500 a second
        events.send_summary(summary(saga_id, 1))
        time.sleep(0.002)
    took = time.monotonic() - started
    items = overview_items(listener.drain(until=lambda got: sum(len(m) for _, _, m in overview_items(got, ids)) == 600),
                           ids)

    assert sum(len(mine) for _, _, mine in items) == 600
    assert len(items) <= took / events.OVERVIEW_WINDOW + 2
    gaps = [b[0] - a[0] for a, b in zip(items[1:], items[2:], strict=False)]  # after the leading message
    assert statistics.median(gaps) > events.OVERVIEW_WINDOW * 0.7, gaps


# --- processes and failures --------------------------------------------------------------------

def _publish_from_child(group: str, report: multiprocessing.Queue) -> None:
    events.send(group, [{"type": "event", "from": "child"}])
    report.put({"sent": events.wait_until_sent(10)})


# The test process runs threads (listeners, the publisher): the child only publishes, as a worker child would.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_child_publishes_from_a_thread_of_its_own(listen):
    group = events.saga_group(uuid.uuid4())
    listener = listen(group)
    events.send(group, [{"type": "event", "from": "parent"}])  # the parent's publisher exists before the fork
    assert listener.get() == {"type": "event", "from": "parent"}
    parent_publisher = events.publisher_for(get_channel_layer())

    context = multiprocessing.get_context("fork")  # what Celery's prefork pool does
    report = context.Queue()
    child = context.Process(target=_publish_from_child, args=(group, report))
    child.start()
    child.join(30)

    assert child.exitcode == 0
    assert report.get(timeout=5)["sent"] is True  # the parent's thread did not survive the fork: the child made its own
    assert listener.get() == {"type": "event", "from": "child"}
    events.send(group, [{"type": "event", "from": "parent, after the fork"}])
    assert listener.get() == {"type": "event", "from": "parent, after the fork"}
    assert events.publisher_for(get_channel_layer()) is parent_publisher


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_sagas_run_while_the_layer_is_unreachable_and_updates_resume_after(celery_worker_process, demo_definitions,
                                                                           listen):
    dead = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                        "CONFIG": {"hosts": [f"redis://127.0.0.1:{_closed_port()}/0"]}}}
    with override_settings(CHANNEL_LAYERS=dead):
        started = time.perf_counter()
        sagas = [services.start_saga(demo_definitions, {}, f"no-redis-{n}")[0] for n in range(20)]
        took = time.perf_counter() - started
        assert events.wait_until_sent(10)

    assert took < 5, f"20 starts took {took:.2f} s with the channel layer unreachable"
    wait_for(lambda: Saga.objects.filter(pk__in=[s.pk for s in sagas], status="completed").count() == 20, 60,
             what="the 20 sagas completed")
    time.sleep(events.PAUSE_AFTER_FAILURE + 0.1)
    group = events.saga_group(uuid.uuid4())
    listener = listen(group)
    events.send(group, [{"type": "event", "n": 1}])
    assert listener.get() == {"type": "event", "n": 1}


def test_a_hung_redis_costs_the_sender_one_timeout_and_never_the_caller(listen, monkeypatch):
    monkeypatch.setattr(events, "SEND_TIMEOUT", 0.3)
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)  # accepts connections, never answers
    hung = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                        "CONFIG": {"hosts": [f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0"]}}}
    try:
        with override_settings(CHANNEL_LAYERS=hung):
            started = time.perf_counter()
            for n in range(500):
                events.send(events.saga_group(uuid.uuid4()), [{"type": "event", "n": n}])
            handed_over = time.perf_counter() - started
            assert events.wait_until_sent(5), "one timeout, then the rest dropped, not 500 timeouts"
    finally:
        blackhole.close()

    assert handed_over < 0.5
    time.sleep(events.PAUSE_AFTER_FAILURE + 0.1)
    group = events.saga_group(uuid.uuid4())
    listener = listen(group)
    events.send(group, [{"type": "event", "n": "after"}])
    assert listener.get() == {"type": "event", "n": "after"}
