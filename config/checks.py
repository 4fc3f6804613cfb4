"""System checks of the deployment (`manage.py check --deploy`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def metrics_token_check(app_configs, **kwargs) -> list[CheckMessage]:
    if not settings.PRODUCTION or settings.METRICS_TOKEN:
        return []
    return [
        Warning(
            "/metrics is served without METRICS_TOKEN: it trusts the connection's address "
            "alone (behind a proxy, the proxy's), and lists every tenant's activity.",
            hint="Set METRICS_TOKEN and give the scraper `Authorization: Bearer <token>`. "
            "Behind a proxy, /metrics answers only with the token.",
            id="voice.W001",
        )
    ]
