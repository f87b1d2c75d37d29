"""Publishing to channels_redis's pub/sub layer with a blocking Redis client (sagas/publisher.py's sender).

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
