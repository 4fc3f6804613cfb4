"""Recordings of every call whose assistant records them: an inbound call played by the Twilio
stand-in is recorded from its answer's TwiML, fetched by a real Celery worker into media
storage, played on the call page, listed in the API, and deleted by the worker after the
retention period (the assistant's, else the tenant's). Every mode starts the recording."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.utils import timezone
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call
from calls.tests.conftest import FakeTwilio
from calls.transports.signatures import sign
from campaigns import tasks
from campaigns.models import Recording, RecordingSettings
from campaigns.tests.conftest import PLATFORM_SID
from devtools.fake_twilio import RECORDING_AUDIO
from devtools.testing import start_test_worker, stop_celery_worker, tasks_queued_to

pytestmark = pytest.mark.django_db(transaction=True)

CALLER = "+15551230000"


def _record(assistant, **options) -> RecordingSettings:
    with scopes_disabled():
        return RecordingSettings.objects.create(
            tenant_id=assistant.tenant_id, assistant=assistant, record_calls=True, **options
        )


def _wait(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def worker(twilio_cloud, live_server, media_root, tmp_path):
    """A real worker that reaches the Twilio stand-in (it fetches the recordings)."""
    started = start_test_worker(
        log_path=tmp_path / "worker.log",
        media_root=media_root,
        extra_env={
            "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
            "TWILIO_API_BASE_URL": twilio_cloud.base_url,
            "PUBLIC_BASE_URL": live_server.url,
        },
    )
    # Tasks the platform queues (the fetch) go to this worker's queue.
    with tasks_queued_to(started.queue):
        yield started
    stop_celery_worker(started)


def _stored(call: Call) -> Recording | None:
    with scopes_disabled():
        return Recording.objects.filter(call=call, status=Recording.Status.STORED).first()


def test_an_inbound_call_is_recorded_announced_fetched_played_and_listed(
    api, key_a, key_b, alice, charlie, assistant_a, number_a, twilio_cloud, worker, media_root
):
    _record(assistant_a)
    with scopes_disabled():
        number_a.tenant.recording_retention_days = 2
        number_a.tenant.save()
    twilio_cloud.speech[CALLER] = ["When are you open?"]

    fake = twilio_cloud.call_in(
        account=PLATFORM_SID,
        from_=CALLER,
        to=number_a.number,
        voice_url=f"{settings.PUBLIC_BASE_URL}/twilio/voice",
        status_callback=f"{settings.PUBLIC_BASE_URL}/twilio/status",
    )
    assert twilio_cloud.wait_idle(timeout=20)
    assert twilio_cloud.errors == []

    with scopes_disabled():
        call = Call.objects.get(call_sid=fake.sid)
    answer = ET.fromstring(fake.twiml[0])
    recording_tag = answer.find("./Start/Recording")
    assert answer[0].tag == "Start"  # before anything is said
    callback = recording_tag.get("recordingStatusCallback")
    assert callback == f"{settings.PUBLIC_BASE_URL}/twilio/recording?call={call.id}"
    assert "This call is recorded. Acme Plumbing, how can I help?" in fake.twiml[0]
    assert "eight to six" in fake.twiml[1]  # the conversation went on as ever
    # Fetched, then deleted at Twilio (which bills storage), by the worker.
    _wait(
        lambda: _stored(call) is not None and twilio_cloud.recordings_deleted,
        timeout=30,
        what=worker.log()[-2000:],
    )
    recording = _stored(call)
    assert (media_root / recording.file).read_bytes() == RECORDING_AUDIO
    assert twilio_cloud.recordings_deleted == {recording.recording_sid}
    kept_for = recording.delete_after - recording.created_at
    assert timedelta(days=2) - timedelta(minutes=1) < kept_for <= timedelta(days=2)

    listed = api(key=key_a).get("/api/v1/recordings/").json()["results"]
    assert [r["id"] for r in listed] == [str(recording.id)]
    path = urlsplit(listed[0]["url"]).path
    assert b"".join(api().get(path).streaming_content) == RECORDING_AUDIO
    page = api(alice).get(f"/dashboard/calls/{call.id}/").content.decode()
    assert f'src="{path}"' in page
    assert api(key=key_b).get(f"/api/v1/recordings/{recording.id}/").status_code == 404
    assert api(key=key_b).get("/api/v1/recordings/").json()["results"] == []
    assert api(charlie).get(f"/dashboard/calls/{call.id}/").status_code == 404


def test_a_call_of_an_assistant_that_does_not_record_is_not_recorded(
    assistant_a, number_a, twilio_cloud, live_server
):
    fake = twilio_cloud.call_in(
        account=PLATFORM_SID,
        from_=CALLER,
        to=number_a.number,
        voice_url=f"{settings.PUBLIC_BASE_URL}/twilio/voice",
    )
    assert twilio_cloud.wait_idle(timeout=20)

    assert "<Start>" not in fake.twiml[0] and "recorded" not in fake.twiml[0]
    assert twilio_cloud.recordings == {}


@pytest.mark.parametrize(
    "mode", [AssistantConfig.Mode.GATHER, AssistantConfig.Mode.RELAY, AssistantConfig.Mode.STREAM]
)
def test_every_mode_starts_the_recording_before_the_conversation(
    client, assistant_a, number_a, mode
):
    with scopes_disabled():
        assistant_a.mode = mode
        assistant_a.save()
    _record(assistant_a, announce_recording=mode != AssistantConfig.Mode.STREAM)

    call_sid, response = FakeTwilio(client).voice(number_a.number)

    assert response.status == 200
    first, second = list(response.root)[:2]
    assert first.tag == "Start" and first[0].tag == "Recording"
    assert "/twilio/recording?call=" in first[0].get("recordingStatusCallback")
    assert second.tag == {"gather": "Gather", "relay": "Connect", "stream": "Connect"}[mode]
    with scopes_disabled():
        call = Call.objects.get(call_sid=call_sid)
    announced = call.config_snapshot["greeting"].startswith("This call is recorded.")
    assert announced == (mode != AssistantConfig.Mode.STREAM)
    if mode == AssistantConfig.Mode.RELAY:
        relay = response.root.find("./Connect/ConversationRelay")
        assert relay.get("welcomeGreeting").startswith("This call is recorded.")


def _post_recording(client, call: Call, *, token: str, call_sid: str | None = None):
    url = f"http://testserver/twilio/recording?call={call.id}"
    params = {
        "CallSid": call_sid or call.call_sid,
        "AccountSid": PLATFORM_SID,
        "RecordingSid": "RE" + "a" * 32,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{PLATFORM_SID}/Recordings/RE1",
        "RecordingStatus": "completed",
        "RecordingDuration": "12",
    }
    signature = sign(url=url, params=params, auth_token=token)
    return client.post(
        f"/twilio/recording?call={call.id}", params, headers={"X-Twilio-Signature": signature}
    )


def test_the_recording_callback_needs_the_calls_tenants_signature_and_its_call(
    client, assistant_a, number_a, tenant_b
):
    _record(assistant_a)
    call_sid, _ = FakeTwilio(client).voice(number_a.number)
    with scopes_disabled():
        call = Call.objects.get(call_sid=call_sid)
        tenant_b.twilio_account_sid = "AC" + "b" * 32
        tenant_b.set_twilio_auth_token("bravo-token")
        tenant_b.save()

    forged = _post_recording(client, call, token="bravo-token")
    other_call = _post_recording(
        client, call, token=settings.TWILIO_AUTH_TOKEN, call_sid="CA" + "0" * 32
    )

    assert forged.status_code == 403
    assert other_call.status_code == 204
    with scopes_disabled():
        assert not Recording.objects.exists()
    assert _post_recording(client, call, token=settings.TWILIO_AUTH_TOKEN).status_code == 204
    with scopes_disabled():
        assert Recording.objects.get().call == call


def _recording(call: Call, *, age: timedelta, sid: str, media_root) -> Recording:
    from campaigns.recordings import recording_note

    with scopes_disabled():
        noted = recording_note(call=call, recording_sid=sid, url="https://x/y", duration=3)
        name = f"recordings/{call.tenant_id}/{sid}.mp3"
        (media_root / name).parent.mkdir(parents=True, exist_ok=True)
        (media_root / name).write_bytes(RECORDING_AUDIO)
        Recording.objects.filter(pk=noted.pk).update(
            file=name,
            status=Recording.Status.STORED,
            created_at=timezone.now() - age,
            delete_after=noted.delete_after - age,
        )
        noted.refresh_from_db()
    return noted


def test_the_worker_deletes_recordings_after_the_assistants_or_the_tenants_retention(
    client, assistant_a, assistant_b, number_a, number_b, media_root, tmp_path
):
    _record(assistant_a, retention_days=1)  # shorter than its tenant's 30 days
    _record(assistant_b)  # its tenant's period
    with scopes_disabled():
        number_b.tenant.recording_retention_days = 3
        number_b.tenant.save()
    calls = {}
    for number in (number_a, number_b):
        call_sid, _ = FakeTwilio(client).voice(number.number)
        with scopes_disabled():
            calls[number.tenant.slug] = Call.objects.get(call_sid=call_sid)
    a_old = _recording(
        calls["acme"], age=timedelta(days=1, hours=1), sid="RE" + "1" * 32, media_root=media_root
    )
    a_new = _recording(
        calls["acme"], age=timedelta(hours=23), sid="RE" + "2" * 32, media_root=media_root
    )
    b_kept = _recording(
        calls["bravo"], age=timedelta(days=2), sid="RE" + "3" * 32, media_root=media_root
    )
    b_old = _recording(
        calls["bravo"], age=timedelta(days=3, hours=1), sid="RE" + "4" * 32, media_root=media_root
    )

    worker = start_test_worker(log_path=tmp_path / "worker.log", media_root=media_root)
    try:
        deleted = tasks.expire_recordings.apply_async(queue=worker.queue).get(timeout=30)
    finally:
        stop_celery_worker(worker)

    assert deleted == 2
    for recording, gone in ((a_old, True), (a_new, False), (b_kept, False), (b_old, True)):
        name = recording.file
        with scopes_disabled():
            recording.refresh_from_db()
        assert (recording.status == Recording.Status.DELETED) == gone
        assert (media_root / name).exists() != gone


def test_the_owner_sets_the_tenants_retention_in_the_admin(client, alice, charlie, tenant_a):
    from tenants.tests.test_admin_tenant import change_url, tenant_form

    client.force_login(alice)
    url = change_url(tenant_a)

    assert client.post(url, tenant_form(tenant_a, recording_retention_days="7")).status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.recording_retention_days == 7
    refused = client.post(url, tenant_form(tenant_a, recording_retention_days="0"))
    assert "recording_retention_days" in refused.context["adminform"].form.errors
    kept = client.post(url, tenant_form(tenant_a))  # left empty: kept
    assert kept.status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.recording_retention_days == 7

    client.force_login(charlie)
    assert client.post(url, tenant_form(tenant_a, recording_retention_days="1")).status_code in (
        403,
        404,
    )
    tenant_a.refresh_from_db()
    assert tenant_a.recording_retention_days == 7


def test_the_api_switches_recording_on_for_an_assistant(
    api, key_a, key_b, client, assistant_a, number_a
):
    url = f"/api/v1/assistants/{assistant_a.id}/recording-settings/"
    owner = api(key=key_a)

    assert owner.get(url).json() == {
        "record_calls": False,
        "announce_recording": True,
        "retention_days": None,
    }
    changed = owner.patch(url, {"record_calls": True, "retention_days": 7}, format="json")
    assert changed.status_code == 200 and changed.json()["retention_days"] == 7
    assert owner.patch(url, {"retention_days": 0}, format="json").status_code == 400
    assert api(key=key_b).get(url).status_code == 404
    assert api(key=key_b).patch(url, {"record_calls": False}, format="json").status_code == 404

    _, response = FakeTwilio(client).voice(number_a.number)
    assert list(response.root)[0].tag == "Start"
    with scopes_disabled():
        assert RecordingSettings.objects.get(assistant=assistant_a).record_calls is True
