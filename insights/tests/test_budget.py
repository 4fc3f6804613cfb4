"""A tenant's spend budget (money per day, a rate limit beside the token budget)."""

from __future__ import annotations

from django_scopes import scope

from calls import services as call_services
from calls.models import Call
from tenants import ratelimits
from tenants.models import RateLimit
from webhooks.tests.conftest import finished_call


def test_once_the_days_spend_is_used_up_new_calls_and_turns_are_refused(
    number_a, number_b, settings, django_capture_on_commit_callbacks
):
    settings.PRICES = {**settings.PRICES, "speech_per_million_characters": {"say": 10**6}}
    RateLimit.objects.create(
        tenant=number_a.tenant, kind=RateLimit.Kind.SPEND_PER_DAY, limit=50, window_seconds=86400
    )
    tenant = number_a.tenant
    assert ratelimits.call_admit(tenant=tenant, call_sid="CA1", caller="+1555").allowed

    with django_capture_on_commit_callbacks(execute=True):
        finished_call(number_a)  # 29 characters of speech at $1 each: $29, over the $0.50

    verdict = ratelimits.call_admit(tenant=tenant, call_sid="CA2", caller="+1555")
    assert not verdict.allowed and verdict.limit.kind == RateLimit.Kind.SPEND_PER_DAY
    assert "cannot take more calls today" in verdict.message
    turn = ratelimits.turn_verdict(tenant=tenant, call_sid="CA1")
    assert not turn.allowed and turn.limit.kind == RateLimit.Kind.SPEND_PER_DAY

    with scope(tenant=tenant.id):
        admission = call_services.call_admit(
            number=number_a, call_sid="CA" + "9" * 32, from_number="+1555", to_number="+1"
        )
        assert admission.call is None and "cannot take more calls" in admission.message
        assert Call.objects.get(call_sid="CA" + "9" * 32).outcome == "rejected_rate_limit"
    # another tenant's budget is its own
    assert ratelimits.call_admit(tenant=number_b.tenant, call_sid="CA3", caller="+1").allowed


def test_spend_under_the_budget_lets_calls_in(number_a, django_capture_on_commit_callbacks):
    RateLimit.objects.create(
        tenant=number_a.tenant, kind=RateLimit.Kind.SPEND_PER_DAY, limit=100, window_seconds=86400
    )
    with django_capture_on_commit_callbacks(execute=True):
        finished_call(number_a)  # under a cent
    assert ratelimits.call_admit(tenant=number_a.tenant, call_sid="CA2", caller="+1").allowed
