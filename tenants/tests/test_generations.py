"""A process keeps a tenant's call settings (rate limits, webhook endpoints, recording settings)
only while the tenant's generation says they are unchanged: every change reaches the next call."""

from __future__ import annotations

import pytest
from django_scopes import scope, scopes_disabled

from campaigns.models import RecordingSettings
from tenants.models import RateLimit, Tenant
from tenants.ratelimits import effective_limits
from webhooks.models import Event
from webhooks.tests.conftest import subscribe

pytestmark = pytest.mark.django_db


def _fresh(tenant: Tenant) -> Tenant:
    """The tenant row as a new call reads it."""
    return Tenant.objects.get(pk=tenant.pk)


def _limit(tenant: Tenant | None, kind: str, limit: int) -> RateLimit:
    with scopes_disabled():
        return RateLimit.objects.create(tenant=tenant, kind=kind, limit=limit)


def test_limits_are_read_once_until_they_change(tenant_a, django_assert_num_queries):
    tenant = _fresh(tenant_a)
    with django_assert_num_queries(1):
        first = effective_limits(tenant)
    tenant = _fresh(tenant_a)  # another call, the same generation
    with django_assert_num_queries(0):
        assert effective_limits(tenant) is first

    row = _limit(tenant_a, RateLimit.Kind.CONCURRENT_CALLS, 3)
    assert effective_limits(_fresh(tenant_a))[RateLimit.Kind.CONCURRENT_CALLS].limit == 3
    row.limit = 5
    row.save()
    assert effective_limits(_fresh(tenant_a))[RateLimit.Kind.CONCURRENT_CALLS].limit == 5
    with scopes_disabled():
        row.delete()
    limit = effective_limits(_fresh(tenant_a)).get(RateLimit.Kind.CONCURRENT_CALLS)
    assert limit is None or limit.tenant_id is None  # the platform's default again, if any


def test_a_platform_default_changes_every_tenants_limits(tenant_a, tenant_b):
    kind = RateLimit.Kind.CALLS_PER_CALLER
    with scopes_disabled():
        RateLimit.objects.filter(tenant__isnull=True, kind=kind).delete()
    for tenant in (tenant_a, tenant_b):
        assert kind not in effective_limits(_fresh(tenant))
    _limit(None, kind, 9)
    for tenant in (tenant_a, tenant_b):
        assert effective_limits(_fresh(tenant))[kind].limit == 9


def test_each_tenant_gets_its_own_limits_and_its_own_changes_only(tenant_a, tenant_b):
    kind = RateLimit.Kind.CONCURRENT_CALLS
    _limit(tenant_b, kind, 7)
    before = _fresh(tenant_a).settings_generation
    assert effective_limits(_fresh(tenant_b))[kind].limit == 7
    mine = effective_limits(_fresh(tenant_a)).get(kind)
    assert mine is None or mine.tenant_id is None
    _limit(tenant_b, RateLimit.Kind.TURNS_PER_CALL, 4)
    assert _fresh(tenant_a).settings_generation == before  # B's change leaves A's copy alone
    assert RateLimit.Kind.TURNS_PER_CALL not in effective_limits(_fresh(tenant_a)) or (
        effective_limits(_fresh(tenant_a))[RateLimit.Kind.TURNS_PER_CALL].tenant_id is None
    )


def test_a_tenant_saved_from_an_old_read_keeps_the_newer_generation(tenant_a):
    old = _fresh(tenant_a)
    effective_limits(old)
    _limit(tenant_a, RateLimit.Kind.CONCURRENT_CALLS, 2)
    old.name = "Acme Plumbing & Heating"
    old.save()  # the admin form of a page opened before the limit was added
    fresh = _fresh(tenant_a)
    assert fresh.name == "Acme Plumbing & Heating"
    assert fresh.settings_generation > old.settings_generation
    assert effective_limits(fresh)[RateLimit.Kind.CONCURRENT_CALLS].limit == 2


def test_a_limit_added_between_calls_applies_to_the_next_call(twilio, number_a, tenant_a):
    _, first = twilio.voice(number_a.number)  # answered; its tenant's limits are now kept
    assert first.status == 200 and not first.has("Hangup")
    _limit(tenant_a, RateLimit.Kind.CONCURRENT_CALLS, 1)  # the first call holds the one line
    _, second = twilio.voice(number_a.number)
    assert second.has("Hangup")
    assert "lines are busy" in second.said


def test_an_endpoint_added_between_calls_gets_the_next_calls_start(twilio, number_a, tenant_a):
    twilio.voice(number_a.number)  # no endpoint yet: nothing written, the answer kept
    with scopes_disabled():
        assert not Event.objects.filter(tenant=tenant_a).exists()
    endpoint, _ = subscribe(tenant_a, "https://crm.example.com/hooks", ["call.started"])
    sid, _ = twilio.voice(number_a.number)
    with scopes_disabled():
        event = Event.objects.get(tenant=tenant_a)
        assert event.type == "call.started" and event.call.call_sid == sid
        assert list(event.deliveries.values_list("endpoint_id", flat=True)) == [endpoint.id]

    endpoint.enabled = False
    with scope(tenant=tenant_a.id):
        endpoint.save()
    twilio.voice(number_a.number)
    with scopes_disabled():
        assert Event.objects.filter(tenant=tenant_a).count() == 1


def test_recording_switched_on_between_calls_records_the_next_call(twilio, number_a, assistant_a):
    _, first = twilio.voice(number_a.number)
    assert first.root.find("./Start/Recording") is None
    with scopes_disabled():
        RecordingSettings.objects.create(
            tenant_id=assistant_a.tenant_id, assistant=assistant_a, record_calls=True
        )
    _, second = twilio.voice(number_a.number)
    assert second.root.find("./Start/Recording") is not None
