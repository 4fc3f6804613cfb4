"""Prometheus metrics: the platform's own, next to django-prometheus' request metrics.

`/metrics` is restricted: the connection must come from one of `METRICS_ALLOWED_NETWORKS`
(default: loopback only), and `Authorization: Bearer <METRICS_TOKEN>` is required when a token is
set. Without a token the peer's address is all there is to go on, and behind a proxy that is the
proxy's: so a request that came through a proxy (forwarding headers), or any request when a proxy
is declared (`TRUST_PROXY_HEADERS`, `TRUSTED_PROXY_HOPS`), is refused unless the token is set and
given (see config/proxies.py). With several server processes on one host, set
`PROMETHEUS_MULTIPROC_DIR` so that every process' samples are added up (prometheus_client's
multiprocess mode).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator

from amqp.exceptions import ChannelError
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config.proxies import behind_proxy, is_forwarded, peer_address

logger = logging.getLogger(__name__)


class ActiveCallsCollector(Collector):
    """Calls in progress per tenant, read from the database at scrape time."""

    def describe(self) -> list:
        return []  # nothing to read at registration time

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count
        from django_scopes import scopes_disabled

        from calls.models import Call

        gauge = GaugeMetricFamily(
            "voice_active_calls", "Calls ringing or in progress.", labels=["tenant", "mode"]
        )
        try:
            with scopes_disabled():  # counts only, across tenants, for the operator
                rows = (
                    Call.objects.filter(status__in=Call.ACTIVE_STATUSES)
                    .values("tenant__slug", "mode")
                    .annotate(n=Count("id"))
                )
                for row in rows:
                    gauge.add_metric([row["tenant__slug"] or "", row["mode"]], row["n"])
        except Exception:
            logger.warning("metrics: could not count active calls", exc_info=True)
        yield gauge


class QueueDepthCollector(Collector):
    """Messages waiting in the Celery queue (speech synthesis)."""

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from config.celery import app

        gauge = GaugeMetricFamily(
            "voice_celery_queue_depth", "Tasks waiting in the Celery queue.", labels=["queue"]
        )
        queue = app.conf.task_default_queue
        try:
            with app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1, timeout=1)
                try:
                    _, waiting, _ = connection.default_channel.queue_declare(queue, passive=True)
                except ChannelError:  # never declared yet: nothing has been queued
                    waiting = 0
            gauge.add_metric([queue], waiting)
        except Exception:
            logger.warning("metrics: could not read the queue depth", exc_info=True)
        yield gauge


_SCRAPE_COLLECTORS = [ActiveCallsCollector(), QueueDepthCollector()]
for _collector in _SCRAPE_COLLECTORS:
    REGISTRY.register(_collector)


def _registry() -> CollectorRegistry:
    """This process' registry, or every process' samples in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in _SCRAPE_COLLECTORS:
        registry.register(collector)
    return registry


def _peer_allowed(request: HttpRequest) -> bool:
    address = peer_address(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(net) for net in settings.METRICS_ALLOWED_NETWORKS)


def _refused(message: str, status: int) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain")


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _peer_allowed(request):
        return _refused("Forbidden.", 403)
    if token := settings.METRICS_TOKEN:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _refused("Unauthorized.", 401)
    elif behind_proxy() or is_forwarded(request):
        return _refused("Forbidden: behind a proxy, /metrics needs METRICS_TOKEN.", 403)
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
