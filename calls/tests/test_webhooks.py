"""The Twilio webhooks: signatures, routing by dialled number, limits, silence, status callbacks."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled
from twilio.twiml.voice_response import Gather

from calls.models import Call, Turn
from calls.transports.signatures import sign
from tenants.models import RateLimit

pytestmark = pytest.mark.django_db


def _calls():
    with scopes_disabled():
        return list(Call.objects.all())


def _turns(call_sid):
    with scopes_disabled():
        return list(Turn.objects.filter(call__call_sid=call_sid).order_by("sequence"))


def _call(call_sid) -> Call:
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


# --- signatures -------------------------------------------------------------------------------


def test_it_refuses_a_request_without_signature_and_stores_nothing(twilio, number_a):
    call_sid = twilio.new_sid()
    response = twilio.post(
        "/twilio/voice", twilio.params(call_sid, to=number_a.number), signature=""
    )
    assert response.status == 403
    assert _calls() == []


def test_it_refuses_a_wrong_signature_and_stores_nothing(twilio, number_a):
    _, response = twilio.voice(number_a.number, auth_token="not-the-token")
    assert response.status == 403
    assert _calls() == []


def test_it_refuses_a_signature_over_other_parameters(twilio, number_a):
    call_sid = twilio.new_sid()
    params = twilio.params(call_sid, to=number_a.number)
    signature = sign(
        url="http://testserver/twilio/voice", params=params, auth_token=twilio.auth_token
    )
    tampered = {**params, "From": "+15559999999"}
    response = twilio.post("/twilio/voice", tampered, signature=signature)
    assert response.status == 403
    assert _calls() == []


def test_it_accepts_a_valid_signature(twilio, number_a):
    call_sid, response = twilio.voice(number_a.number)
    assert response.status == 200
    assert response.has("Gather")
    assert _call(call_sid).tenant_id == number_a.tenant_id


def test_it_checks_the_public_url_behind_a_tls_proxy(twilio, number_a, settings):
    settings.PUBLIC_BASE_URL = "https://voice.example.com"
    settings.ALLOWED_HOSTS = ["testserver", "voice.example.com"]
    call_sid = twilio.new_sid()
    params = twilio.params(call_sid, to=number_a.number, CallStatus="ringing")
    # Signed for the internal URL the app sees: refused.
    assert twilio.post("/twilio/voice", params).status == 403
    # Signed for the public https URL Twilio used: accepted.
    response = twilio.post(
        "/twilio/voice", params, signed_url="https://voice.example.com/twilio/voice"
    )
    assert response.status == 200
    gather = next(response.root.iter("Gather"))
    assert gather.get("action") == "https://voice.example.com/twilio/gather"


def test_it_trusts_forwarded_proto_and_host_when_configured(twilio, number_a, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    settings.ALLOWED_HOSTS = ["testserver", "voice.example.com"]
    call_sid = twilio.new_sid()
    params = twilio.params(call_sid, to=number_a.number, CallStatus="ringing")
    response = twilio.post(
        "/twilio/voice",
        params,
        signed_url="https://voice.example.com/twilio/voice",
        X_Forwarded_Proto="https",
        X_Forwarded_Host="voice.example.com",
    )
    assert response.status == 200


def test_it_checks_against_the_tenants_own_twilio_token(twilio, number_a, tenant_a):
    tenant_a.set_twilio_auth_token("tenant-a-own-token")
    tenant_a.save()
    _, with_platform_token = twilio.voice(number_a.number)
    assert with_platform_token.status == 403
    call_sid, with_own_token = twilio.voice(number_a.number, auth_token="tenant-a-own-token")
    assert with_own_token.status == 200
    assert _call(call_sid).tenant_id == tenant_a.id


def test_another_tenants_token_cannot_drive_a_call(twilio, number_a, number_b, tenant_b):
    tenant_b.set_twilio_auth_token("tenant-b-own-token")
    tenant_b.save()
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "hello", auth_token="tenant-b-own-token")
    assert response.status == 403
    assert _turns(call_sid) == []


def test_get_is_not_allowed(client):
    assert client.get("/twilio/voice").status_code == 405


# --- routing by the dialled number ------------------------------------------------------------


def test_an_unknown_number_hears_a_message_and_is_recorded_as_rejected(twilio, db):
    call_sid, response = twilio.voice("+14155559999")
    assert response.status == 200
    assert "not in service" in response.said
    assert response.has("Hangup")
    call = _call(call_sid)
    assert call.status == Call.Status.REJECTED
    assert call.tenant_id is None
    assert call.outcome == Call.Outcome.REJECTED_UNKNOWN_NUMBER


def test_a_garbage_number_is_an_unknown_number(twilio, db):
    call_sid, response = twilio.voice("not a number <script>")
    assert response.status == 200
    assert response.has("Hangup")
    assert _call(call_sid).outcome == Call.Outcome.REJECTED_UNKNOWN_NUMBER


@pytest.mark.parametrize("what", ["number", "tenant"])
def test_an_inactive_number_or_tenant_is_rejected_politely(twilio, number_a, what):
    target = number_a if what == "number" else number_a.tenant
    target.active = False
    target.save()
    call_sid, response = twilio.voice(number_a.number)
    assert response.status == 200
    assert "not available" in response.said
    assert response.has("Hangup")
    call = _call(call_sid)
    assert (call.status, call.outcome) == (Call.Status.REJECTED, Call.Outcome.REJECTED_INACTIVE)


def test_a_missing_callsid_is_a_clear_400(twilio, number_a):
    params = twilio.params("", to=number_a.number)
    assert twilio.post("/twilio/voice", params).status == 400
    assert _calls() == []


def test_the_greeting_of_the_dialled_numbers_assistant_is_spoken(twilio, number_a, number_b):
    _, response_a = twilio.voice(number_a.number)
    _, response_b = twilio.voice(number_b.number)
    assert response_a.said == "Acme Plumbing, how can I help?"
    assert response_b.said == "Bravo Bakery, hello!"
    gather = next(response_a.root.iter("Gather"))
    assert gather.get("input") == "speech"
    assert gather.get("language") == "en-US"
    assert gather.get("speechTimeout") == "auto"


def test_a_retried_voice_webhook_does_not_create_a_second_call(twilio, number_a):
    call_sid, first = twilio.voice(number_a.number)
    _, second = twilio.voice(number_a.number, call_sid=call_sid)
    assert first.status == second.status == 200
    assert len(_calls()) == 1


def test_the_call_keeps_a_snapshot_of_its_assistant(twilio, number_a, assistant_a):
    call_sid, _ = twilio.voice(number_a.number)
    assistant_a.greeting = "Changed later"
    assistant_a.save()
    call = _call(call_sid)
    assert call.config_snapshot["greeting"] == "Acme Plumbing, how can I help?"
    assert call.config_snapshot["model"] == "llama-3.3-70b-versatile"
    assert call.status == Call.Status.IN_PROGRESS


# --- rate limits ------------------------------------------------------------------------------


def test_concurrent_calls_over_the_limit_are_rejected_with_speech(twilio, number_a, tenant_a):
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
    first, ok = twilio.voice(number_a.number, from_="+15550000001")
    second, busy = twilio.voice(number_a.number, from_="+15550000002")
    assert ok.has("Gather")
    assert busy.status == 200
    assert "lines are busy" in busy.said
    assert busy.has("Hangup")
    assert _call(second).outcome == Call.Outcome.REJECTED_RATE_LIMIT
    # When the first call ends, its line is free again.
    twilio.status(first, number_a.number, "completed", sequence=3, duration=10)
    third, again = twilio.voice(number_a.number, from_="+15550000003")
    assert again.has("Gather")


def test_a_limit_edited_in_the_admin_applies_to_the_next_call(twilio, number_a, tenant_a):
    limit = RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
    twilio.voice(number_a.number)
    limit.limit = 2
    limit.save()
    _, response = twilio.voice(number_a.number)
    assert response.has("Gather")


def test_calls_per_caller_over_the_limit_are_rejected(twilio, number_a, tenant_a):
    RateLimit.objects.create(
        tenant=tenant_a, kind=RateLimit.Kind.CALLS_PER_CALLER, limit=2, window_seconds=3600
    )
    for _ in range(2):
        _, ok = twilio.voice(number_a.number, from_="+15550000007")
        assert ok.has("Gather")
    call_sid, refused = twilio.voice(number_a.number, from_="+15550000007")
    assert "too many calls" in refused.said
    assert _call(call_sid).status == Call.Status.REJECTED
    _, other_caller = twilio.voice(number_a.number, from_="+15550000008")
    assert other_caller.has("Gather")


def test_a_reject_action_answers_reject_not_an_http_error(twilio, number_a, tenant_a):
    RateLimit.objects.create(
        tenant=tenant_a,
        kind=RateLimit.Kind.CONCURRENT_CALLS,
        limit=1,
        action=RateLimit.Action.REJECT,
    )
    twilio.voice(number_a.number)
    _, response = twilio.voice(number_a.number)
    assert response.status == 200
    assert response.has("Reject")


def test_one_tenants_limit_does_not_touch_another_tenant(twilio, number_a, number_b, tenant_a):
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
    twilio.voice(number_a.number)
    _, response = twilio.voice(number_b.number)
    assert response.has("Gather")


# --- silence and odd speech ----------------------------------------------------------------------


def test_silence_reprompts_a_bounded_number_of_times_then_says_goodbye(twilio, number_a, settings):
    settings.MAX_SILENT_PROMPTS = 2
    call_sid, _ = twilio.voice(number_a.number)
    first = twilio.gather(call_sid, number_a.number, None)
    second = twilio.gather(call_sid, number_a.number, "")
    third = twilio.gather(call_sid, number_a.number, "   ")
    assert "didn't catch that" in first.said and first.has("Gather")
    assert "didn't catch that" in second.said and second.has("Gather")
    assert "Goodbye" in third.said and third.has("Hangup")
    assert _call(call_sid).outcome == Call.Outcome.NO_INPUT
    assert _turns(call_sid) == []


def test_speaking_resets_the_silence_count(twilio, number_a, settings):
    settings.MAX_SILENT_PROMPTS = 1
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, None)
    twilio.gather(call_sid, number_a.number, "when are you open")
    response = twilio.gather(call_sid, number_a.number, None)
    assert response.has("Gather")


def test_an_faq_question_is_answered_without_the_llm(twilio, number_a, settings):
    settings.GROQ_API_KEY = settings.GROQ_BASE_URL = ""
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "Hi! When are you OPEN, please?")
    assert response.said == "We are open from eight to six, Monday to Friday."
    assert response.has("Gather")
    caller, assistant = _turns(call_sid)
    assert (caller.role, caller.text, caller.confidence) == (
        "caller",
        "Hi! When are you OPEN, please?",
        0.91,
    )
    assert (assistant.role, assistant.source, assistant.model_used) == ("assistant", "faq", "")
    assert assistant.response_sent_ms is not None


def test_without_an_llm_configured_the_caller_hears_so(twilio, number_a, settings):
    settings.GROQ_API_KEY = settings.GROQ_BASE_URL = ""
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "Can you fix a leaking tap?")
    assert "no language model connected" in response.said
    assert _turns(call_sid)[-1].source == "not_configured"


@pytest.mark.parametrize(
    "speech",
    ["¿Cuándo abren? 営業時間は？ 🚰", "x" * 100_000, "<Say>inject</Say> & \x00 '\""],
    ids=["unicode", "huge", "hostile"],
)
def test_odd_speech_is_stored_and_answered(twilio, number_a, settings, speech):
    settings.GROQ_API_KEY = settings.GROQ_BASE_URL = ""
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, speech)
    assert response.status == 200
    assert response.has("Gather")
    caller = _turns(call_sid)[0]
    # As said, up to MAX_UTTERANCE_CHARS (the huge one is cut there).
    assert caller.text == speech.replace("\x00", "").strip()[: settings.MAX_UTTERANCE_CHARS]


def test_a_gather_for_an_unknown_call_hangs_up_politely(twilio, number_a):
    response = twilio.gather(twilio.new_sid(), number_a.number, "hello")
    assert response.status == 200
    assert response.has("Hangup")


# --- status callbacks -----------------------------------------------------------------------------


def test_a_completed_status_closes_the_call_with_duration(twilio, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    assert (
        twilio.status(call_sid, number_a.number, "completed", sequence=3, duration=42).status == 204
    )
    call = _call(call_sid)
    assert (call.status, call.duration_seconds, call.outcome) == ("completed", 42, "completed")
    assert call.ended_at is not None


def test_repeated_and_out_of_order_status_callbacks_change_nothing_twice(twilio, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.status(call_sid, number_a.number, "in-progress", sequence=1)
    twilio.status(call_sid, number_a.number, "completed", sequence=3, duration=30)
    ended_at = _call(call_sid).ended_at
    twilio.status(call_sid, number_a.number, "completed", sequence=3, duration=99)
    twilio.status(call_sid, number_a.number, "in-progress", sequence=2)
    twilio.status(call_sid, number_a.number, "ringing", sequence=0)
    call = _call(call_sid)
    assert (call.status, call.duration_seconds, call.ended_at) == ("completed", 30, ended_at)


def test_a_late_lower_sequence_is_ignored(twilio, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.status(call_sid, number_a.number, "in-progress", sequence=5)
    twilio.status(call_sid, number_a.number, "ringing", sequence=2)
    assert _call(call_sid).status == "in-progress"


def test_no_answer_and_busy_close_the_call_as_failed(twilio, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.status(call_sid, number_a.number, "busy", sequence=1)
    assert (_call(call_sid).status, _call(call_sid).outcome) == ("busy", "failed")


def test_a_status_for_an_unknown_call_is_acknowledged(twilio, number_a):
    assert twilio.status(twilio.new_sid(), number_a.number, "completed", sequence=1).status == 204


def test_a_status_with_garbage_numbers_is_not_a_500(twilio, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    params = twilio.params(
        call_sid, to=number_a.number, CallStatus="completed", SequenceNumber="x", CallDuration="-"
    )
    assert twilio.post("/twilio/status", params).status == 204
    assert _call(call_sid).status == "completed"


def test_a_status_callback_with_a_bad_signature_changes_nothing(twilio, number_a):
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.status(call_sid, number_a.number, "completed", sequence=3, auth_token="nope")
    assert response.status == 403
    assert _call(call_sid).status == "in-progress"


# --- fallback URL ---------------------------------------------------------------------------------


def test_the_fallback_url_apologises_and_hangs_up(twilio, number_a):
    params = twilio.params(twilio.new_sid(), to=number_a.number, ErrorCode="11200")
    response = twilio.post("/twilio/fallback", params)
    assert response.status == 200
    assert "something went wrong" in response.said
    assert response.has("Hangup")
    assert twilio.post("/twilio/fallback", params, auth_token="wrong").status == 403


def test_the_fallback_of_a_placed_call_checks_the_token_of_the_tenant_that_placed_it(
    twilio, number_a, tenant_a
):
    tenant_a.set_twilio_auth_token("tenant-a-own-token")
    tenant_a.save()
    params = twilio.params(
        twilio.new_sid(),
        to="+14155550123",  # the callee, nobody's number here
        from_=number_a.number,
        Direction="outbound-api",
        ErrorCode="11200",
    )
    response = twilio.post("/twilio/fallback", params, auth_token="tenant-a-own-token")
    assert response.status == 200 and "something went wrong" in response.said
    assert twilio.post("/twilio/fallback", params).status == 403  # not the platform's token


def test_a_voice_webhook_that_fails_after_admission_ends_the_call_and_frees_its_line(
    twilio, number_a, tenant_a, monkeypatch
):
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
    # The twilio library fails while building the greeting's <Gather> (after the call started).
    with monkeypatch.context() as patched:
        patched.setattr(Gather, "__init__", _fail)
        call_sid, response = twilio.voice(number_a.number)
    assert response.status == 200 and response.has("Hangup")
    assert "something went wrong" in response.said
    call = _call(call_sid)
    assert (call.status, call.outcome) == ("completed", "error")
    assert "voice webhook failed" in call.error
    # The line was given back: the next caller is answered despite a limit of one.
    next_sid, answer = twilio.voice(number_a.number)
    assert answer.has("Gather") and _call(next_sid).status == "in-progress"


def _fail(*args, **kwargs):
    raise RuntimeError("TwiML could not be built")
