"""Websocket URLs."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/sagas/", consumers.SagaStreamConsumer.as_asgi()),
    path("ws/sagas/<uuid:saga_id>/", consumers.SagaStreamConsumer.as_asgi()),
]
