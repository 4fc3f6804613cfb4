"""One outbound call through the API, played by the Twilio stand-in against the live platform."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from calls.models import Call, Turn
from campaigns.models import (
    DoNotCall,
    OutboundCall,
    OutboundSettings,
    Recording,
    RecordingSettings,
)
from campaigns.recordings import recordings_expire
from devtools.fake_twilio import RECORDING_AUDIO

pytestmark = pytest.mark.django_db(transaction=True)

CALLEE = "+14155550123"


def _place(api, key, assistant, number, **extra):
    body = {"assistant": str(assistant.id), "phone_number": str(number.id), "to": CALLEE, **extra}
    return api(key=key).post("/api/v1/outbound-calls/", body, format="json")


def test_it_places_a_call_with_variables_and_follows_it_to_the_end(
    api, key_a, greeting_with_name, number_a, twilio_cloud
):
    twilio_cloud.speech[CALLEE] = ["When are you open?"]
    response = _place(
        api, key_a, greeting_with_name, number_a, variables={"first_name": "Ada", "topic": "boiler"}
    )

    assert response.status_code == 201, response.content
    assert twilio_cloud.wait_idle(timeout=15)
    assert twilio_cloud.errors == []
    fake = next(iter(twilio_cloud.calls.values()))
    assert (fake.to, fake.from_) == (CALLEE, number_a.number)
    assert fake.param("MachineDetection") == "DetectMessageEnd"
    assert "Hi Ada, this is Acme about your boiler." in fake.twiml[0]
    assert "eight to six" in fake.twiml[1]  # the FAQ answered the callee's question
    with scopes_disabled():
        call = Call.objects.get(pk=response.json()["call"])
        turns = list(Turn.objects.filter(call=call).values_list("role", "text"))
    assert call.direction == "outbound"
    assert call.call_sid == fake.sid
    assert call.status == Call.Status.COMPLETED
    assert call.answered_at is not None
    assert call.config_snapshot["system_prompt"] == "You call Ada about a boiler."
    assert ("caller", "When are you open?") in turns
    detail = api(key=key_a).get(f"/api/v1/outbound-calls/{response.json()['id']}/").json()
    assert (detail["status"], detail["answered_by"]) == ("completed", "human")


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
def test_an_unanswered_call_is_closed_with_twilios_status(
    api, key_a, assistant_a, number_a, twilio_cloud, outcome
):
    twilio_cloud.outcomes[CALLEE] = outcome
    response = _place(api, key_a, assistant_a, number_a)
    assert twilio_cloud.wait_idle(timeout=15)

    with scopes_disabled():
        call = Call.objects.get(pk=response.json()["call"])
    assert call.status == outcome
    assert call.answered_at is None
    assert len(twilio_cloud.calls) == 1
    assert twilio_cloud.calls[call.call_sid].twiml == []  # the voice URL was never fetched


def test_a_machine_hears_the_assistants_message_after_the_beep(
    api, key_a, greeting_with_name, number_a, twilio_cloud
):
    with scopes_disabled():
        OutboundSettings.objects.create(
            tenant=number_a.tenant,
            assistant=greeting_with_name,
            action=OutboundSettings.Action.LEAVE_MESSAGE,
            message="Hello {{first_name}}, please call Acme back.",
        )
    twilio_cloud.outcomes[CALLEE] = "machine"
    response = _place(api, key_a, greeting_with_name, number_a, variables={"first_name": "Ada"})
    assert twilio_cloud.wait_idle(timeout=15)

    fake = next(iter(twilio_cloud.calls.values()))
    assert fake.said_after_beep == "Hello Ada, please call Acme back."
    with scopes_disabled():
        outbound = OutboundCall.objects.get(pk=response.json()["id"])
    assert outbound.answered_by == OutboundCall.AnsweredBy.MACHINE
    assert outbound.voicemail_left is True


def test_a_machine_is_hung_up_on_by_default(api, key_a, assistant_a, number_a, twilio_cloud):
    twilio_cloud.outcomes[CALLEE] = "machine"
    response = _place(api, key_a, assistant_a, number_a)
    assert twilio_cloud.wait_idle(timeout=15)

    fake = next(iter(twilio_cloud.calls.values()))
    assert fake.updates == [{"Status": "completed"}]
    with scopes_disabled():
        assert OutboundCall.objects.get(pk=response.json()["id"]).voicemail_left is False


def test_a_number_on_the_do_not_call_list_is_never_dialled(
    api, key_a, assistant_a, number_a, twilio_cloud
):
    api(key=key_a).post("/api/v1/do-not-call/", {"number": CALLEE}, format="json")
    response = _place(api, key_a, assistant_a, number_a)

    assert response.status_code == 400
    assert "do-not-call" in response.json()["to"][0]
    assert twilio_cloud.calls == {}


def test_stop_calling_me_said_on_a_call_puts_the_callee_on_the_list(
    api, key_a, assistant_a, number_a, twilio_cloud
):
    twilio_cloud.speech[CALLEE] = ["Please stop calling me."]
    _place(api, key_a, assistant_a, number_a)
    assert twilio_cloud.wait_idle(timeout=15)

    with scopes_disabled():
        entry = DoNotCall.objects.get(tenant=number_a.tenant, number=CALLEE)
    assert entry.source == DoNotCall.Source.CALL
    assert _place(api, key_a, assistant_a, number_a).status_code == 400


def test_twilio_out_of_reach_is_a_503_and_the_call_is_stored_as_failed(
    api, key_a, assistant_a, number_a, twilio_cloud, settings
):
    twilio_cloud.stop()
    response = _place(api, key_a, assistant_a, number_a)

    assert response.status_code == 503
    assert "could not be reached" in response.json()["detail"]
    with scopes_disabled():
        call = Call.objects.get(tenant=number_a.tenant, direction="outbound")
    assert call.status == Call.Status.FAILED
    assert "could not be reached" in call.error


def test_bad_input_gets_a_clear_400(api, key_a, assistant_a, number_a, twilio_cloud):
    bad_number = _place(api, key_a, assistant_a, number_a, to="12345")
    bad_variables = _place(api, key_a, assistant_a, number_a, variables={"a b": "x"})
    huge_variable = _place(api, key_a, assistant_a, number_a, variables={"name": "x" * 5000})

    assert bad_number.status_code == 400 and "to" in bad_number.json()
    assert bad_variables.status_code == 400 and "variables" in bad_variables.json()
    assert huge_variable.status_code == 400
    assert twilio_cloud.calls == {}


def test_another_tenants_assistant_number_and_calls_are_404(
    api, key_a, key_b, assistant_a, number_a, assistant_b, number_b, twilio_cloud
):
    with_their_assistant = _place(api, key_b, assistant_a, number_b)
    with_their_number = _place(api, key_b, assistant_b, number_a)
    placed = _place(api, key_a, assistant_a, number_a).json()

    assert with_their_assistant.status_code == 404
    assert with_their_number.status_code == 404
    assert api(key=key_b).get(f"/api/v1/outbound-calls/{placed['id']}/").status_code == 404
    assert api(key=key_b).get("/api/v1/outbound-calls/").json()["results"] == []
    assert len(twilio_cloud.calls) == 1


@pytest.fixture
def tasks_inline():
    """Celery tasks queued by the platform run at once, in the process that queues them (the
    live server's thread here): the recording is fetched while the test waits for the call."""
    from config.celery import app

    option = f"{app.namespace}_TASK_ALWAYS_EAGER"
    previous = app.conf.task_always_eager
    app.conf.update({option: True})
    yield
    app.conf.update({option: previous})


def test_a_recorded_call_is_announced_fetched_played_and_deleted_on_time(
    api, key_a, key_b, alice, charlie, assistant_a, number_a, twilio_cloud, media_root, tasks_inline
):
    with scopes_disabled():
        RecordingSettings.objects.create(
            tenant=number_a.tenant, assistant=assistant_a, record_calls=True
        )
    response = _place(api, key_a, assistant_a, number_a)
    assert twilio_cloud.wait_idle(timeout=15)

    fake = next(iter(twilio_cloud.calls.values()))
    assert fake.param("Record") == "true"
    assert "This call is recorded. Acme Plumbing, how can I help?" in fake.twiml[0]
    with scopes_disabled():
        recording = Recording.objects.get(call_id=response.json()["call"])
    assert recording.status == Recording.Status.STORED
    assert (media_root / recording.file).read_bytes() == RECORDING_AUDIO
    assert twilio_cloud.recordings_deleted == {recording.recording_sid}  # no storage billed
    # Linked in the API, served, and played on the call page; none of it for another tenant.
    listed = api(key=key_a).get("/api/v1/recordings/").json()["results"]
    assert [r["id"] for r in listed] == [str(recording.id)]
    path = urlsplit(listed[0]["url"]).path
    assert b"".join(api().get(path).streaming_content) == RECORDING_AUDIO
    page = api(alice).get(f"/dashboard/calls/{recording.call_id}/").content.decode()
    assert f'src="{path}"' in page
    assert api(key=key_b).get(f"/api/v1/recordings/{recording.id}/").status_code == 404
    assert api(key=key_b).get("/api/v1/recordings/").json()["results"] == []
    assert api(charlie).get(f"/dashboard/calls/{recording.call_id}/").status_code == 404

    with scopes_disabled():
        Recording.objects.filter(pk=recording.pk).update(delete_after=timezone.now())
    assert recordings_expire() == 1
    assert not (media_root / recording.file).exists()
    detail = api(key=key_a).get(f"/api/v1/recordings/{recording.id}/").json()
    assert (detail["status"], detail["url"]) == ("deleted", "")


def test_recordings_are_kept_for_the_retention_period(
    api, key_a, assistant_a, number_a, twilio_cloud, media_root, tasks_inline
):
    with scopes_disabled():
        RecordingSettings.objects.create(
            tenant=number_a.tenant,
            assistant=assistant_a,
            record_calls=True,
            announce_recording=False,
            retention_days=7,
        )
    _place(api, key_a, assistant_a, number_a)
    assert twilio_cloud.wait_idle(timeout=15)

    assert "This call is recorded" not in next(iter(twilio_cloud.calls.values())).twiml[0]
    assert recordings_expire() == 0
    with scopes_disabled():
        recording = Recording.objects.get()
    kept_for = recording.delete_after - recording.created_at
    assert timedelta(days=7) - timedelta(minutes=1) < kept_for <= timedelta(days=7)
