"""The publishing thread of a process, and how it reaches a channel layer that is not Redis pub/sub.

`Publisher` takes what the engine hands over and sends it from a plain thread of its own, through a
sender: `redis_publish.LayerSender` (a blocking Redis client, for channels_redis's pub/sub layer)
or `LoopSender` (the layer's own `group_send` on an event loop, for any other layer). Either way the
engine's thread never waits for the layer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable


class LoopSender:
    """Sends through the layer's `group_send` on an event loop: the web server's for the in-memory
    layer (its queues live there), a loop thread of this process's own for other layers."""

    def __init__(self, layer, loop: Callable[[], asyncio.AbstractEventLoop | None], timeout: float):
        self.layer, self.loop, self.timeout = layer, loop, timeout

    def send(self, messages_by_group: dict[str, dict]) -> None:
        """Send each group's message; raises on failure or after `timeout` seconds."""
        loop = self.loop()
        if loop is None or loop.is_closed():
            return  # embedded mode before any browser connected: nobody to tell

        async def send_all() -> None:
            await asyncio.gather(*(self.layer.group_send(group, message) for group, message in messages_by_group.items()))

        asyncio.run_coroutine_threadsafe(asyncio.wait_for(send_all(), self.timeout), loop).result(self.timeout + 1)


LINGER = 0.005  # seconds a message may wait for others to share its round trip


class Publisher:
    """A process's publisher: a plain thread that sends what the engine hands over (each group's
    messages in order, the overview coalesced per window, drops instead of waits when the layer
    fails). Handing over is an append under a lock; every group waiting goes to the sender at once.
    """

    def __init__(self, sender, *, overview_group: str, window: float, queue_limit: int,
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
        self.thread = threading.Thread(target=self._run, name="sagaboard-publisher", daemon=True)
        self.thread.start()

    # handing over (any thread; never blocks on Redis)

    def enqueue(self, group: str, messages: list[dict]) -> None:
        with self.condition:
            if len(self.queue) + len(messages) > self.queue_limit:
                self.dropped += len(messages)
                self.complain("live-update queue full: %d messages dropped so far", self.dropped)
                return
            self.queue.extend((group, message) for message in messages)
            self.condition.notify()

    def coalesce(self, summary: dict) -> None:
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
