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


# --- behind a proxy -------------------------------------------------------------------------
# A proxy on the host appends the real client's address to X-Forwarded-For; what comes before
# it was written by the client.


def test_a_request_through_a_proxy_gets_no_metrics_without_the_token(client):
    response = client.get(
        "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.9"
    )
    assert response.status_code == 403
    assert b"voice_" not in response.content
    assert b"METRICS_TOKEN" in response.content
    for header in ("HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        assert client.get("/metrics", **{header: "127.0.0.1"}).status_code == 403


def test_behind_a_declared_proxy_only_the_token_opens_metrics(client, settings):
    settings.TRUST_PROXY_HEADERS = True
    # The proxy itself scrapes from loopback without forwarding headers: still refused.
    assert client.get("/metrics").status_code == 403
    settings.TRUST_PROXY_HEADERS = False
    settings.TRUSTED_PROXY_HOPS = 1
    assert client.get("/metrics").status_code == 403
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    right = client.get(
        "/metrics",
        HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.9",
        headers={"Authorization": "Bearer s3cret-metrics-token"},
    )
    assert right.status_code == 200
    assert b"voice_" in right.content


def test_the_token_does_not_open_metrics_outside_the_allowed_networks(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    response = client.get(
        "/metrics",
        REMOTE_ADDR="203.0.113.9",
        headers={"Authorization": "Bearer s3cret-metrics-token"},
    )
    assert response.status_code == 403
