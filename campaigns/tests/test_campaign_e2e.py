"""A 200-contact campaign dialled by a real Celery worker (beat inside it) against the Twilio
stand-in, which plays every call against the live platform; the worker is killed mid-campaign
and a new one takes over."""

from __future__ import annotations

import csv
import io
import os
import signal
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.utils import timezone
from django_scopes import scopes_disabled

from campaigns.models import Campaign, Contact
from devtools.testing import (
    channels_database_env,
    database_url,
    start_celery_worker,
    stop_celery_worker,
    wait_until_ready,
)

pytestmark = pytest.mark.django_db(transaction=True)

CONTACTS = 200
MAX_CONCURRENT = 6
CALLS_PER_SECOND = 10
MAX_ATTEMPTS = 2
OUTCOME_BY_DIGIT = {0: "busy", 1: "no-answer", 2: "failed", 3: "machine"}  # the rest: answered


def _etc_zone(offset_hours: int) -> str:
    """The fixed-offset zone `offset_hours` east of UTC (Etc/ names count the other way)."""
    return "UTC" if offset_hours == 0 else f"Etc/GMT{-offset_hours:+d}"


def _zones_in_and_out_of_window(now: datetime) -> tuple[str, str]:
    """A zone where it is about noon now (inside 09-17), and one where it is about midnight."""
    offset = 12 - now.hour
    outside = offset + 12 if offset + 12 <= 14 else offset - 12
    return _etc_zone(offset), _etc_zone(outside)


def _numbers() -> list[str]:
    return [f"+1415555{1000 + i}" for i in range(CONTACTS)]


def _expected_outcome(number: str) -> str:
    return OUTCOME_BY_DIGIT.get(int(number[-1]), "answered")


def _wait(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def worker_env(twilio_cloud, live_server, media_root):
    queue = f"test-campaigns-{uuid.uuid4().hex[:8]}"
    return queue, {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": queue,
        "MEDIA_ROOT": str(media_root),
        **channels_database_env(),
        "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
        "TWILIO_API_BASE_URL": twilio_cloud.base_url,
        "PUBLIC_BASE_URL": live_server.url,
        "CAMPAIGN_TICK_SECONDS": "1",
        "CAMPAIGN_DIAL_RECONCILE_SECONDS": "3",
        "CAMPAIGN_MAX_CALLS_PER_SECOND": "50",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def test_a_campaign_of_200_contacts_survives_a_worker_killed_mid_way(
    api, key_a, assistant_a, number_a, twilio_cloud, worker_env, tmp_path
):
    twilio_cloud.talk_seconds = 2.0  # answered calls outlast the dialling: lines fill up
    numbers = _numbers()
    for number in numbers:
        twilio_cloud.outcomes[number] = _expected_outcome(number)
    inside, outside = _zones_in_and_out_of_window(datetime.now(UTC))
    waiting = set(numbers[5:8])  # in a zone where it is night now
    blocked = set(numbers[10:15])  # put on the do-not-call list after the upload
    client = api(key=key_a)

    campaign = client.post(
        "/api/v1/campaigns/",
        {
            "name": "Reminders",
            "assistant": str(assistant_a.id),
            "phone_number": str(number_a.id),
            "timezone": inside,
            "window_start": "09:00",
            "window_end": "17:00",
            "window_days": "1234567",
            "max_concurrent": MAX_CONCURRENT,
            "calls_per_second": CALLS_PER_SECOND,
            "max_attempts": MAX_ATTEMPTS,
            "retry_delay_seconds": 1,
        },
        format="json",
    ).json()
    lines = ["number,first_name,timezone"]
    lines += [f"{n},Name{i},{outside if n in waiting else ''}" for i, n in enumerate(numbers)]
    upload = io.BytesIO("\n".join(lines).encode())
    upload.name = "contacts.csv"
    report = client.post(
        f"/api/v1/campaigns/{campaign['id']}/contacts/", {"file": upload}, format="multipart"
    ).json()
    assert report["imported"] == CONTACTS
    for number in blocked:
        client.post("/api/v1/do-not-call/", {"number": number}, format="json")
    assert client.post(f"/api/v1/campaigns/{campaign['id']}/start/").status_code == 200

    queue, env = worker_env
    log_path = tmp_path / "worker.log"
    worker = start_celery_worker(
        env=env, queue=queue, log_path=log_path, beat_schedule=tmp_path / "beat-1"
    )
    try:
        _wait(lambda: len(twilio_cloud.calls) >= 60, timeout=90, what="60 calls placed")
        os.killpg(worker.process.pid, signal.SIGKILL)  # the machine dies, no warm shutdown
        worker.process.wait(timeout=10)
        placed_before_restart = len(twilio_cloud.calls)
        worker = start_celery_worker(
            env=env, queue=queue, log_path=log_path, beat_schedule=tmp_path / "beat-2"
        )
        wait_until_ready(worker)

        def all_called() -> bool:
            with scopes_disabled():
                left = Contact.objects.filter(campaign_id=campaign["id"]).exclude(
                    state=Contact.State.DONE
                )
                return set(left.values_list("number", flat=True)) == waiting

        _wait(all_called, timeout=180, what=f"every contact called:\n{worker.log()[-3000:]}")
    finally:
        stop_celery_worker(worker)
    assert twilio_cloud.wait_idle(timeout=30)
    assert placed_before_restart < len(twilio_cloud.calls)

    with scopes_disabled():
        contacts = {c.number: c for c in Contact.objects.filter(campaign_id=campaign["id"])}
    for number, contact in contacts.items():
        created = twilio_cloud.creates_to(number)
        if number in blocked:
            assert (contact.outcome, created) == (Contact.Outcome.DO_NOT_CALL, 0)
        elif number in waiting:
            assert contact.state == Contact.State.PENDING and created == 0
            assert contact.next_attempt_at > timezone.now()
        else:
            expected = _expected_outcome(number)
            outcome = "voicemail" if expected == "machine" else expected
            retried = expected in ("busy", "no-answer", "failed")
            assert (contact.outcome, contact.attempts) == (outcome, MAX_ATTEMPTS if retried else 1)
            assert created == contact.attempts, f"{number} was called {created} times"
    # The limits, as Twilio saw them.
    assert twilio_cloud.max_active == MAX_CONCURRENT  # reached, never passed
    assert twilio_cloud.max_creates_per_second() <= CALLS_PER_SECOND
    assert twilio_cloud.errors == []

    progress = client.get(f"/api/v1/campaigns/{campaign['id']}/").json()["progress"]
    assert progress["completed"] == CONTACTS - len(waiting)
    assert progress["do_not_call"] == len(blocked)
    assert progress["voicemail"] == sum(
        1 for n in numbers if _expected_outcome(n) == "machine" and n not in blocked | waiting
    )
    # The contacts waiting for their window end with the campaign.
    client.post(f"/api/v1/campaigns/{campaign['id']}/cancel/")
    with scopes_disabled():
        assert Campaign.objects.get(pk=campaign["id"]).status == Campaign.Status.CANCELED
        assert not Contact.objects.filter(campaign_id=campaign["id"]).exclude(state="done")
    results = client.get(f"/api/v1/campaigns/{campaign['id']}/results/")
    rows = list(csv.DictReader(io.StringIO(results.content.decode())))
    assert len(rows) == CONTACTS
    assert {row["outcome"] for row in rows} == {
        "answered",
        "voicemail",
        "busy",
        "no-answer",
        "failed",
        "do-not-call",
        "canceled",
    }
    print(
        f"\ncampaign: {len(twilio_cloud.calls)} calls, at most {twilio_cloud.max_active} at once "
        f"(limit {MAX_CONCURRENT}), at most {twilio_cloud.max_creates_per_second()} created in "
        f"one second (limit {CALLS_PER_SECOND}); {placed_before_restart} placed before the kill"
    )
