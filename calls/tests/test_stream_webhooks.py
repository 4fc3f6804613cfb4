"""Stream mode's webhooks in process: the voice answer that connects a Media Stream, and
/twilio/stream-action, which carries out what the session left to do."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call
from calls.transports.media import handoff_store, recognition_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream_a(assistant_a) -> AssistantConfig:
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.STREAM
        assistant_a.save()
    return assistant_a


def call_of(call_sid: str) -> Call:
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


def test_voice_connects_a_stream_assistant_to_a_media_stream(twilio, stream_a, number_a):
    call_sid, response = twilio.voice(number_a.number)
    assert response.status == 200
    call = call_of(call_sid)
    assert call.mode == Call.Mode.STREAM
    connect = next(response.root.iter("Connect"))
    stream = next(response.root.iter("Stream"))
    assert connect.get("action") == "http://testserver/twilio/stream-action"
    assert stream.get("url") == f"ws://testserver/twilio/media?call={call.id}"
    params = {p.get("name"): p.get("value") for p in stream.iter("Parameter")}
    assert params == {"call": str(call.id), "tenant": "acme"}
    assert not response.has("Gather") and not response.has("ConversationRelay")


def test_a_public_base_url_gives_a_wss_stream(twilio, stream_a, number_a, settings):
    settings.PUBLIC_BASE_URL = "https://voice.example.com"
    call_sid, response = twilio.voice(
        number_a.number, signed_url="https://voice.example.com/twilio/voice"
    )
    stream = next(response.root.iter("Stream"))
    assert stream.get("url") == f"wss://voice.example.com/twilio/media?call={call_of(call_sid).id}"


def action(twilio, call_sid: str, number: str, **extra: str):
    params = twilio.params(call_sid, to=number, CallStatus="in-progress", **extra)
    return twilio.post("/twilio/stream-action", params)


def test_stream_action_dials_the_transfer_number_once_the_session_asked_for_it(
    twilio, stream_a, number_a
):
    call_sid, _ = twilio.voice(number_a.number)
    handoff_store(call_of(call_sid), {"transfer": True, "reason": "live-agent-handoff"})

    response = action(twilio, call_sid, number_a.number)

    assert response.texts("Dial") == ["+15005550001"]
    call = call_of(call_sid)
    assert (call.status, call.outcome) == (Call.Status.COMPLETED, Call.Outcome.TRANSFERRED)
    # Twilio retries: the same answer.
    assert action(twilio, call_sid, number_a.number).texts("Dial") == ["+15005550001"]


def test_stream_action_says_the_sessions_last_words_and_hangs_up(twilio, stream_a, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    handoff_store(call_of(call_sid), {"reason": "recognition-failed", "message": "Sorry."})

    response = action(twilio, call_sid, number_a.number)

    assert response.texts("Say") == ["Sorry."] and response.has("Hangup")
    assert call_of(call_sid).status == Call.Status.COMPLETED


def test_stream_action_without_a_handoff_hangs_up(twilio, stream_a, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    response = action(twilio, call_sid, number_a.number)
    assert response.has("Hangup") and not response.has("Dial") and not response.has("Say")


def test_stream_action_refuses_an_unsigned_or_another_tenants_request(
    twilio, stream_a, number_a, tenant_b
):
    call_sid, _ = twilio.voice(number_a.number)
    handoff_store(call_of(call_sid), {"transfer": True})
    params = twilio.params(call_sid, to=number_a.number, CallStatus="in-progress")
    assert twilio.post("/twilio/stream-action", params, signature="").status == 403
    with scopes_disabled():
        tenant_b.set_twilio_auth_token("tenant-b-own-token")
        tenant_b.save()
    signed_by_b = twilio.post("/twilio/stream-action", params, auth_token="tenant-b-own-token")
    assert signed_by_b.status == 403
    assert call_of(call_sid).status == Call.Status.IN_PROGRESS  # nothing changed


def test_an_assistant_of_several_languages_is_heard_by_deepgrams_multilingual_model(
    twilio, stream_a, number_a
):
    call_sid, _ = twilio.voice(number_a.number)
    assert recognition_settings(call_of(call_sid)).language == "en-US"
    with scopes_disabled():
        stream_a.other_languages = ["es-ES"]
        stream_a.save()
    call_sid, _ = twilio.voice(number_a.number)
    assert recognition_settings(call_of(call_sid)).language == "multi"
    with scopes_disabled():
        stream_a.recognition_provider = "assemblyai"
        stream_a.save()
    call_sid, _ = twilio.voice(number_a.number)
    assert recognition_settings(call_of(call_sid)).language == "en-US"
