"""Publishing to channels_redis's pub/sub layer from a plain thread with a blocking Redis client.

The layer's own `group_send` goes through asyncio and redis-py's asyncio client: about a
millisecond of CPU per message, which a worker pays on every step it records. This sends the
same thing, a PUBLISH of the layer's serialized message on the layer's channel name for the
group (so consumers receive it exactly as from `group_send`), from the publishing thread with a
blocking client, and every group of a batch in one pipelined round trip.

It relies on how channels_redis 4 names a group's channel (`<prefix>__group__<group>`) and
picks a host for it; `layer_sender` returns None for setups it does not know (Sentinel hosts),
and the caller then uses `group_send`.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import redis
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash, decode_hosts


class LayerSender:
    def __init__(self, layer: RedisPubSubChannelLayer, hosts: list[dict], timeout: float):
        self.serialize = layer.serialize
        self.prefix = layer._kwargs.get("prefix", "asgi")
        self.clients = [
            redis.Redis.from_url(host["address"], socket_timeout=timeout, socket_connect_timeout=timeout,
                                 **{name: value for name, value in host.items() if name != "address"})
            for host in hosts
        ]

    def send(self, messages_by_group: dict[str, dict]) -> None:
        """PUBLISH each group's message; raises redis.RedisError (a timeout included) on failure."""
        pipelines = {}
        for group, message in messages_by_group.items():
            channel = f"{self.prefix}__group__{group}"
            index = _consistent_hash(channel, len(self.clients))
            if index not in pipelines:
                pipelines[index] = self.clients[index].pipeline(transaction=False)
            pipelines[index].publish(channel, self.serialize(message))
        for pipeline in pipelines.values():
            pipeline.execute()


def layer_sender(layer, timeout: float) -> LayerSender | None:
    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    hosts = decode_hosts(layer._kwargs.get("hosts"))
    if any("address" not in host for host in hosts):
        return None
    return LayerSender(layer, hosts, timeout)


LINGER = 0.005  # seconds a message may wait for others to share its round trip


class ThreadPublisher:
    """A process's publisher for a Redis pub/sub layer: a plain thread that sends what the engine
    hands over, the same way as the asyncio publisher in sagas/events.py (each group's messages in
    order, the overview coalesced per window, drops instead of waits when Redis fails), without an
    event loop: handing over is an append under a lock, and every group waiting is sent in one
    pipelined round trip.
    """

    def __init__(self, sender: LayerSender, *, overview_group: str, window: float, queue_limit: int,
                 pause_after_failure: float, complain):
        self.sender = sender
        self.overview_group, self.window, self.queue_limit = overview_group, window, queue_limit
        self.pause_after_failure, self.complain = pause_after_failure, complain
        self.condition = threading.Condition()
        self.queue: deque[tuple[str, dict]] = deque()
        self.pending: dict[str, dict] = {}  # overview: the latest summary per saga id
        self.window_until = 0.0  # the overview's window is open until then (monotonic)
        self.sending = False
        self.dropped = self.failed = 0
        self.paused_until = 0.0
        threading.Thread(target=self._run, name="sagaboard-publisher", daemon=True).start()

    # handing over (any thread; never blocks on Redis)

    def enqueue(self, layer, group: str, messages: list[dict]) -> None:
        with self.condition:
            if len(self.queue) + len(messages) > self.queue_limit:
                self.dropped += len(messages)
                self.complain("live-update queue full: %d messages dropped so far", self.dropped)
                return
            self.queue.extend((group, message) for message in messages)
            self.condition.notify()

    def coalesce(self, layer, summary: dict) -> None:
        with self.condition:
            now = time.monotonic()
            if not self.pending and now >= self.window_until:
                # The first change after a quiet spell goes at once and opens the window.
                self.queue.append((self.overview_group, {"type": "saga", "saga": summary}))
                self.window_until = now + self.window
            else:
                known = self.pending.get(summary["id"])
                if known is None or known["version"] <= summary["version"]:
                    self.pending[summary["id"]] = summary
            self.condition.notify()

    def idle(self) -> bool:
        """Whether everything handed over was sent; a summary waiting for its window goes now."""
        with self.condition:
            if self.pending:
                self.window_until = 0.0
                self.condition.notify()
            return not (self.queue or self.pending or self.sending)

    # the sending thread

    def _run(self) -> None:
        while True:
            with self.condition:
                while not (self.queue or (self.pending and time.monotonic() >= self.window_until)):
                    wait = max(0.0, self.window_until - time.monotonic()) if self.pending else None
                    self.condition.wait(wait)
                self.sending = True
            # A worker records a saga's steps a few milliseconds apart: what they publish meanwhile
            # joins this round trip, as more messages in the same PUBLISH for the saga's group.
            time.sleep(LINGER)
            with self.condition:
                if self.pending and time.monotonic() >= self.window_until:
                    # The changes kept during the window, together, and the window opens again.
                    batch = list(self.pending.values())
                    self.pending.clear()
                    overview = {"type": "saga", "saga": batch[0]} if len(batch) == 1 else {"type": "sagas", "sagas": batch}
                    self.queue.append((self.overview_group, overview))
                    self.window_until = time.monotonic() + self.window
                taken = list(self.queue)
                self.queue.clear()
            try:
                self._send(taken)
            finally:
                with self.condition:
                    self.sending = False

    def _send(self, taken: list[tuple[str, dict]]) -> None:
        if time.monotonic() < self.paused_until:
            self.dropped += len(taken)  # Redis just failed: drop rather than have each batch wait to fail
            return
        by_group: dict[str, list[dict]] = {}
        for group, message in taken:
            by_group.setdefault(group, []).append(message)
        try:
            self.sender.send({group: {"type": "forward", "messages": messages} for group, messages in by_group.items()})
        except Exception:  # noqa: BLE001 (a lost notification must never break the engine)
            self.failed += 1
            self.paused_until = time.monotonic() + self.pause_after_failure
            self.complain("publishing a live update failed (%d so far)", self.failed, exc_info=True)
