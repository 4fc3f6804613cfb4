"""A process keeps the dialled numbers' rows (number, tenant, assistant, versions) only while
the directory's generation in Redis is unchanged: every change reaches the next call."""

from __future__ import annotations

import pytest
from django.conf import settings
from django_scopes import scopes_disabled

from assistants.versions import version_publish
from core import caching
from tenants import directory
from tenants.models import PhoneNumber, Tenant
from tenants.selectors import unscoped_phone_number_by_dialled

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _with_redis():
    if not settings.REDIS_URL or caching.redis_client() is None:
        pytest.fail("these tests need Redis (REDIS_URL): the directory's generation lives there")


def test_a_number_is_read_once_and_each_caller_gets_its_own_copy(
    number_a, django_assert_num_queries
):
    with django_assert_num_queries(1):
        first = unscoped_phone_number_by_dialled(number_a.number)
    with django_assert_num_queries(0):
        second = unscoped_phone_number_by_dialled(number_a.number)
        assert second.tenant.slug == "acme" and second.assistant.name == "Acme front desk"
    assert second == first and second is not first
    second.tenant.name = "changed in one request only"
    assert unscoped_phone_number_by_dialled(number_a.number).tenant.name == "Acme Plumbing"


def test_a_number_deactivated_between_calls_refuses_the_next_call(twilio, number_a):
    _, first = twilio.voice(number_a.number)
    assert first.status == 200 and not first.has("Hangup")
    with scopes_disabled():
        number_a.active = False
        number_a.save()
    _, second = twilio.voice(number_a.number)
    assert second.has("Hangup")


def test_a_tenant_switched_off_between_calls_refuses_the_next_call(twilio, number_a, tenant_a):
    _, first = twilio.voice(number_a.number)
    assert not first.has("Hangup")
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    tenant.active = False
    tenant.save()
    _, second = twilio.voice(number_a.number)
    assert second.has("Hangup")


def test_a_number_moved_to_another_assistant_answers_with_it_on_the_next_call(
    twilio, number_a, tenant_a, assistant_a
):
    _, first = twilio.voice(number_a.number)
    assert "Acme Plumbing, how can I help?" in first.said
    with scopes_disabled():
        other = type(assistant_a).objects.create(
            tenant=tenant_a,
            name="Acme after hours",
            system_prompt="You take messages.",
            greeting="Acme after hours, leave a message.",
            tts_engine=assistant_a.tts_engine,
        )
        number_a.assistant = other
        number_a.save()
    _, second = twilio.voice(number_a.number)
    assert "Acme after hours, leave a message." in second.said


def test_a_version_published_between_calls_is_the_next_calls(twilio, number_a, assistant_a):
    _, first = twilio.voice(number_a.number)
    assert "Acme Plumbing, how can I help?" in first.said
    with scopes_disabled():
        assistant_a.greeting = "Acme Plumbing, new greeting."
        assistant_a.save()
        version_publish(assistant=assistant_a, check=False)  # its assistant row: an update()
    _, second = twilio.voice(number_a.number)
    assert "Acme Plumbing, new greeting." in second.said


def test_a_change_in_another_process_is_seen_through_redis(number_a, django_assert_num_queries):
    assert unscoped_phone_number_by_dialled(number_a.number).active
    # Another process changes the row and the directory's generation; nothing here is told.
    with scopes_disabled():
        PhoneNumber.objects.filter(pk=number_a.pk).update(active=False)
    assert unscoped_phone_number_by_dialled(number_a.number).active  # still this process' copy
    caching.redis_client().set(directory.KEY, "another process' change")
    with django_assert_num_queries(1):
        assert not unscoped_phone_number_by_dialled(number_a.number).active


def test_a_change_inside_a_transaction_renews_the_generation_again_on_commit(
    number_a, django_capture_on_commit_callbacks
):
    redis = caching.redis_client()
    unscoped_phone_number_by_dialled(number_a.number)
    before = redis.get(directory.KEY)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with scopes_disabled():
            number_a.label = "Front desk"
            number_a.save()
        at_once = redis.get(directory.KEY)
    assert at_once != before  # at once: the test's own next read sees the change
    unscoped_phone_number_by_dialled(number_a.number)  # could be a read from before the commit
    for callback in callbacks:
        callback()
    assert redis.get(directory.KEY) not in (before, at_once)  # so it is renewed at the commit


def test_without_redis_every_lookup_reads_the_database(
    settings, number_a, django_assert_num_queries
):
    settings.REDIS_URL = ""
    for _ in range(2):
        with django_assert_num_queries(1):
            assert unscoped_phone_number_by_dialled(number_a.number).number == number_a.number


def test_a_copy_is_kept_no_longer_than_number_cache_seconds(
    settings, number_a, django_assert_num_queries
):
    settings.NUMBER_CACHE_SECONDS = 0  # not kept at all
    for _ in range(2):
        with django_assert_num_queries(1):
            unscoped_phone_number_by_dialled(number_a.number)


def test_each_tenants_number_is_its_own(number_a, number_b):
    assert unscoped_phone_number_by_dialled(number_a.number).tenant.slug == "acme"
    assert unscoped_phone_number_by_dialled(number_b.number).tenant.slug == "bravo"
    assert unscoped_phone_number_by_dialled(number_a.number).tenant.slug == "acme"
    assert unscoped_phone_number_by_dialled("+14155550999") is None  # nobody's
