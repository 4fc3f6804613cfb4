"""The platform's own Prometheus metrics move when calls happen."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tenants.models import RateLimit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


def test_a_call_moves_the_call_turn_latency_and_llm_metrics(twilio, number_a, fake_groq, client):
    turns_before = _value("voice_turns_total", mode="gather", role="assistant", source="llm")
    latency_before = _value("voice_turn_stage_seconds_count", mode="gather", stage="turn")
    errors_before = _value(
        "voice_llm_errors_total", model="llama-3.3-70b-versatile", kind="rate_limited"
    )
    retries_before = _value("voice_llm_fallbacks_total", kind="retry")
    misses_before = _value("voice_answer_cache_total", result="miss")
    calls_before = _value("voice_calls_total", tenant="acme", mode="gather", result="started")

    fake_groq.queue_fault(429, retry_after=0.05)
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "Do you fix boilers?")

    assert _value("voice_calls_total", tenant="acme", mode="gather", result="started") == (
        calls_before + 1
    )
    assert _value("voice_turns_total", mode="gather", role="assistant", source="llm") == (
        turns_before + 1
    )
    assert _value("voice_turn_stage_seconds_count", mode="gather", stage="turn") == (
        latency_before + 1
    )
    assert _value(
        "voice_llm_errors_total", model="llama-3.3-70b-versatile", kind="rate_limited"
    ) == (errors_before + 1)
    assert _value("voice_llm_fallbacks_total", kind="retry") == retries_before + 1
    assert _value("voice_answer_cache_total", result="miss") == misses_before + 1

    scraped = _scrape(client)
    active = [s for s in scraped["voice_active_calls"] if s.labels["tenant"] == "acme"]
    assert [(s.labels["mode"], s.value) for s in active] == [("gather", 1.0)]
    assert [s.name for s in scraped["voice_celery_queue_depth"]] == ["voice_celery_queue_depth"]
    # django-prometheus' request metrics are there too.
    assert "django_http_requests_latency_seconds_by_view_method" in scraped


def test_rate_limit_rejections_are_counted_per_tenant_and_kind(twilio, number_a, tenant_a):
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
    before = _value("voice_rate_limited_total", tenant="acme", kind="concurrent_calls")
    twilio.voice(number_a.number)
    twilio.voice(number_a.number)
    assert _value("voice_rate_limited_total", tenant="acme", kind="concurrent_calls") == before + 1
