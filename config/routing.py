"""Websocket routes. Consumers validate their own callers in connect()."""

from __future__ import annotations

from django.urls import path

from analytics.consumers import DashboardConsumer

websocket_urlpatterns: list = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
]
