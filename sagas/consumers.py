"""Websocket consumers: authenticate, join the groups, forward what events.py publishes.

The messages and their groups are described in events.py; each websocket message is one of the
contract's typed messages (or the overview's coalesced `sagas` batch).

`/ws/sagas/` carries every saga change and the alerts; `/ws/sagas/<id>/` one saga's changes,
steps and events. Anonymous users and users without the viewer role are closed with 4401.
"""

from __future__ import annotations

import asyncio

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events, roles

UNAUTHORIZED = 4401


class SagaStreamConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not await _can_view(user):
            await self.accept()
            await self.close(code=UNAUTHORIZED)
            return
        events.bind_loop(asyncio.get_running_loop())
        saga_id = self.scope["url_route"]["kwargs"].get("saga_id")
        self.groups_joined = [events.saga_group(saga_id)] if saga_id else [events.ALL_SAGAS, events.ALERTS]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def forward(self, event: dict) -> None:
        for message in event["messages"]:  # one group's messages, batched by events.py, in order
            await self.send_json(message)


async def _can_view(user) -> bool:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(user.has_perm)(roles.VIEW)
