"""One outbound call through the API, played by the Twilio stand-in against the live platform."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from calls.models import Call, Turn
from campaigns.models import DoNotCall, OutboundCall, VoicemailSettings

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
        VoicemailSettings.objects.create(
            tenant=number_a.tenant,
            assistant=greeting_with_name,
            action=VoicemailSettings.Action.LEAVE_MESSAGE,
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
