"""/metrics: who may scrape it (the metrics themselves: calls/tests/test_call_metrics.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_metrics_are_served_to_loopback_only_by_default(client):
    assert client.get("/metrics").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403
    assert b"voice_" not in refused.content


def test_allowed_networks_are_configurable(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="not-an-ip").status_code == 403


def test_a_token_is_required_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert right.status_code == 200
