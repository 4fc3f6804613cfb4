"""The dialler, run in-process against the Twilio stand-in: claims, windows, moves, and the
reconciliation of calls a dialler wrote but never heard back about."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from calls.models import Call
from campaigns import services, windows
from campaigns.dispatch import _TenantLock, campaigns_dial
from campaigns.models import Campaign, Contact, OutboundCall
from tenants.twilio_numbers import rest_client

pytestmark = pytest.mark.django_db(transaction=True)

NUMBERS = ["+14155552001", "+14155552002", "+14155552003"]
UNREACHABLE = "http://127.0.0.1:9/voice"  # the discard port: nothing answers


@pytest.fixture
def campaign(tenant_a, assistant_a, number_a, settings) -> Campaign:
    settings.CAMPAIGN_MAX_CALLS_PER_SECOND = 50
    settings.CAMPAIGN_DIAL_RECONCILE_SECONDS = 0
    with scopes_disabled():
        campaign = Campaign.objects.create(
            tenant=tenant_a,
            name="Follow-ups",
            assistant=assistant_a,
            phone_number=number_a,
            window_start=dt.time(0, 0),
            window_end=dt.time(23, 59, 59),
            window_days="1234567",
            calls_per_second=50,
            status=Campaign.Status.RUNNING,
        )
        for number in NUMBERS:
            Contact.objects.create(
                tenant=tenant_a, campaign=campaign, number=number, next_attempt_at=timezone.now()
            )
    return campaign


def _dial(tenant, seconds: float = 2.0) -> int:
    with scope(tenant=tenant.id):
        return campaigns_dial(tenant=tenant, seconds=seconds)


def _contacts(campaign) -> dict[str, Contact]:
    with scopes_disabled():
        return {c.number: c for c in Contact.objects.filter(campaign=campaign)}


def test_it_calls_every_due_contact_once_and_completes_the_campaign(
    campaign, tenant_a, twilio_cloud
):
    assert _dial(tenant_a) == 3
    assert twilio_cloud.wait_idle(timeout=15)
    _dial(tenant_a, seconds=0.5)

    assert all(c.outcome == Contact.Outcome.ANSWERED for c in _contacts(campaign).values())
    assert sorted(call.to for call in twilio_cloud.calls.values()) == NUMBERS
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.COMPLETED


def test_a_paused_campaign_dials_nobody_until_resumed(campaign, tenant_a, twilio_cloud):
    with scopes_disabled():
        services.campaign_move(campaign=campaign, action="pause")
    assert _dial(tenant_a, seconds=0.5) == 0
    with scopes_disabled():
        services.campaign_move(campaign=campaign, action="resume")
    assert _dial(tenant_a) == 3


def test_canceling_ends_every_contact_not_yet_called(campaign, tenant_a, twilio_cloud):
    with scopes_disabled():
        services.campaign_move(campaign=campaign, action="cancel")
        with pytest.raises(services.ValidationError):
            services.campaign_move(campaign=campaign, action="resume")
    assert _dial(tenant_a, seconds=0.5) == 0
    assert {c.outcome for c in _contacts(campaign).values()} == {Contact.Outcome.CANCELED}
    assert twilio_cloud.calls == {}


def test_a_contact_outside_its_window_waits_for_the_next_opening(campaign, tenant_a, twilio_cloud):
    now = timezone.now()
    with scopes_disabled():
        campaign.window_start = dt.time(9, 0)
        campaign.window_end = dt.time(17, 0)
        campaign.save()
        # Twelve hours away from a zone where it is noon: midnight, outside 09-17.
        noon_offset = 12 - now.astimezone(UTC).hour
        night = noon_offset + 12 if noon_offset + 12 <= 14 else noon_offset - 12
        zone = "UTC" if night == 0 else f"Etc/GMT{-night:+d}"
        Contact.objects.filter(campaign=campaign).update(timezone=zone)

    assert _dial(tenant_a, seconds=0.5) == 0
    for contact in _contacts(campaign).values():
        assert contact.state == Contact.State.PENDING
        assert contact.next_attempt_at == windows.next_opening(campaign, zone, now)
    assert twilio_cloud.calls == {}


def test_windows_open_on_the_chosen_weekdays_in_the_contacts_zone():
    campaign = Campaign(
        window_start=dt.time(9), window_end=dt.time(17), window_days="12345", timezone="UTC"
    )
    friday_evening = dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)  # a Friday
    assert not windows.in_window(campaign, "", friday_evening)
    assert windows.in_window(campaign, "Asia/Tokyo", dt.datetime(2026, 12, 4, 1, 0, tzinfo=UTC))
    opening = windows.next_opening(campaign, "", friday_evening)
    assert opening == dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # Monday morning


def test_a_number_put_on_the_list_after_upload_is_skipped(campaign, tenant_a, twilio_cloud):
    with scopes_disabled():
        services.dnc_add(tenant=tenant_a, number=NUMBERS[0])
    assert _dial(tenant_a) == 2
    assert _contacts(campaign)[NUMBERS[0]].outcome == Contact.Outcome.DO_NOT_CALL
    assert twilio_cloud.creates_to(NUMBERS[0]) == 0


def _written_but_not_placed(campaign, number: str) -> OutboundCall:
    """What a dialler that died before Twilio answered leaves behind."""
    with scopes_disabled():
        contact = Contact.objects.get(campaign=campaign, number=number)
        outbound = services.outbound_prepare(
            tenant=campaign.tenant,
            assistant=campaign.assistant,
            phone_number=campaign.phone_number,
            to=number,
            variables={},
            contact=contact,
        )
        Contact.objects.filter(pk=contact.pk).update(
            state=Contact.State.DIALLING, attempts=1, last_call=outbound.call
        )
        OutboundCall.objects.filter(pk=outbound.pk).update(
            created_at=timezone.now() - timedelta(minutes=5)
        )
    return outbound


def test_a_call_written_but_never_placed_is_placed_once(campaign, tenant_a, twilio_cloud):
    lost = _written_but_not_placed(campaign, NUMBERS[0])

    _dial(tenant_a)
    assert twilio_cloud.wait_idle(timeout=15)

    assert twilio_cloud.creates_to(NUMBERS[0]) == 1
    with scopes_disabled():
        assert Call.objects.get(pk=lost.call_id).status == Call.Status.FAILED
    contact = _contacts(campaign)[NUMBERS[0]]
    assert (contact.attempts, contact.outcome) == (1, Contact.Outcome.ANSWERED)


def test_a_call_twilio_placed_while_the_dialler_died_is_adopted_not_repeated(
    campaign, tenant_a, twilio_cloud, settings
):
    with scopes_disabled():
        services.campaign_move(campaign=campaign, action="pause")
    lost = _written_but_not_placed(campaign, NUMBERS[0])
    # Twilio took the request, but neither its answer nor its callbacks reached the platform.
    sid = settings.TWILIO_ACCOUNT_SID
    twilio = rest_client(sid, settings.TWILIO_AUTH_TOKEN).api.v2010.accounts(sid)
    placed = twilio.calls.create(to=NUMBERS[0], from_=lost.call.from_number, url=UNREACHABLE)
    with scopes_disabled():
        services.campaign_move(campaign=campaign, action="resume")

    _dial(tenant_a)

    assert twilio_cloud.creates_to(NUMBERS[0]) == 1
    with scopes_disabled():
        assert Call.objects.get(pk=lost.call_id).call_sid == placed.sid
        assert OutboundCall.objects.get(pk=lost.pk).placed_at is not None


def test_a_second_dialler_of_the_same_tenant_does_nothing(campaign, tenant_a, twilio_cloud):
    other = _TenantLock(tenant_a.id)
    assert other.acquire()
    try:
        assert _dial(tenant_a, seconds=0.5) == 0
    finally:
        other.release()
    assert _dial(tenant_a) == 3
    assert len(twilio_cloud.calls) == 3
