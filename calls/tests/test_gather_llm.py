"""Gather mode answering with the LLM: the real groq SDK against a Groq-compatible server.

Every fault here is produced at the wire by the fake Groq server; the platform's code runs as is.
"""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django_scopes import scopes_disabled

from calls.models import Turn
from calls.phrases import APOLOGY
from tenants.models import RateLimit

pytestmark = pytest.mark.django_db

MAIN = "llama-3.3-70b-versatile"
FALLBACK = "llama-3.1-8b-instant"


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


def _turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call__call_sid=call_sid).order_by("sequence"))


def _ask(twilio, number, *questions: str) -> tuple[str, list]:
    call_sid, _ = twilio.voice(number.number)
    responses = [twilio.gather(call_sid, number.number, q) for q in questions]
    return call_sid, responses


def test_the_llm_answer_is_spoken_and_stored_with_its_timings(twilio, number_a, fake_groq):
    fake_groq.queue_answer("A plumber can come tomorrow morning. Shall I book it?")
    call_sid, [response] = _ask(twilio, number_a, "Can someone fix my boiler?")

    assert response.status == 200
    assert response.texts("Say") == ["A plumber can come tomorrow morning.", "Shall I book it?"]
    assert response.has("Gather")
    caller, assistant = _turns(call_sid)
    assert assistant.text == "A plumber can come tomorrow morning. Shall I book it?"
    assert (assistant.source, assistant.model_used, assistant.cache_hit) == ("llm", MAIN, False)
    assert assistant.tokens_in and assistant.tokens_out
    assert assistant.llm_first_token_ms is not None
    assert assistant.llm_first_token_ms <= assistant.llm_done_ms <= assistant.response_sent_ms
    assert assistant.fallbacks == [] and assistant.error == ""
    # <Say> engine: nothing to wait for, so no audio was played.
    assert assistant.first_audio_ms is None and assistant.audio_urls == []


def test_the_request_carries_the_config_prompt_and_history(
    twilio, number_a, assistant_a, fake_groq
):
    with scopes_disabled():
        assistant_a.temperature, assistant_a.max_tokens, assistant_a.context_turns = 0.3, 200, 2
        assistant_a.save()
    fake_groq.queue_answer("First answer.")
    fake_groq.queue_answer("Second answer.")
    fake_groq.queue_answer("Third answer.")
    _ask(twilio, number_a, "question one", "question two", "question three")

    first, second, third = fake_groq.requests
    assert first.model == MAIN and first.stream is True
    assert first.temperature == 0.3 and first.max_tokens == 200
    assert first.messages == [
        {"role": "system", "content": "You are Acme Plumbing's receptionist."},
        {"role": "user", "content": "question one"},
    ]
    assert second.messages[1:] == [
        {"role": "user", "content": "question one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "question two"},
    ]
    # context_turns = 2: only the last two earlier turns travel with the third question.
    assert third.messages == [
        {"role": "system", "content": "You are Acme Plumbing's receptionist."},
        {"role": "user", "content": "question two"},
        {"role": "assistant", "content": "Second answer."},
        {"role": "user", "content": "question three"},
    ]


def test_a_rate_limited_request_is_retried_after_retry_after(twilio, number_a, fake_groq):
    fake_groq.queue_fault(429, retry_after=0.2)
    fake_groq.set_answer("We can help with that.")
    call_sid, [response] = _ask(twilio, number_a, "Do you unblock drains?")

    assert response.said == "We can help with that."
    assert len(fake_groq.requests) == 2
    gap = fake_groq.requests[1].received_monotonic - fake_groq.requests[0].received_monotonic
    assert gap >= 0.2  # Retry-After honoured
    turn = _turns(call_sid)[-1]
    assert turn.source == "llm" and turn.model_used == MAIN
    assert turn.fallbacks == [f"retry:{MAIN}"]
    assert "HTTP 429" in turn.error


def test_a_failing_main_model_falls_back_to_the_fallback_model(
    twilio, number_a, fake_groq, settings
):
    settings.LLM_BACKOFF_SECONDS = 0.01
    fake_groq.queue_fault(500, model=MAIN, count=settings.LLM_MAX_ATTEMPTS)
    fake_groq.queue_answer("The small model answers.", model=FALLBACK)
    call_sid, [response] = _ask(twilio, number_a, "Are you open on Sunday mornings?")

    assert response.said == "The small model answers."
    models = [r.model for r in fake_groq.requests]
    assert models == [MAIN] * settings.LLM_MAX_ATTEMPTS + [FALLBACK]
    turn = _turns(call_sid)[-1]
    assert turn.model_used == FALLBACK
    assert f"fallback_model:{FALLBACK}" in turn.fallbacks


def test_an_unknown_model_is_not_retried_but_falls_back(twilio, number_a, fake_groq):
    fake_groq.configure(models=[FALLBACK])  # the main model answers 404 model_not_found
    fake_groq.queue_answer("Fallback here.", model=FALLBACK)
    call_sid, [response] = _ask(twilio, number_a, "Hello, anyone there?")

    assert response.said == "Fallback here."
    # The 404 is answered before the server records a request: only the fallback is on record.
    assert [r.model for r in fake_groq.requests] == [FALLBACK]
    turn = _turns(call_sid)[-1]
    assert turn.model_used == FALLBACK
    assert turn.error.count("HTTP 404") == 1  # not retried


def test_a_groq_that_never_answers_gets_an_apology_inside_the_deadline(
    twilio, number_a, fake_groq, settings
):
    settings.WEBHOOK_DEADLINE_SECONDS = 3.0
    settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS = 0.4
    settings.LLM_BACKOFF_SECONDS = 0.01
    fake_groq.queue_fault("hang", count=100)
    started = time.monotonic()
    call_sid, [response] = _ask(twilio, number_a, "Is anybody there?")
    elapsed = time.monotonic() - started

    assert response.status == 200
    assert response.said == APOLOGY
    assert response.has("Gather")  # the call goes on
    assert elapsed < settings.WEBHOOK_DEADLINE_SECONDS + 1  # includes the voice webhook
    turn = _turns(call_sid)[-1]
    assert turn.source == "apology"
    assert "timeout" in turn.error
    # A timeout moves on to the fallback model at once rather than waiting on the main one again.
    assert [r.model for r in fake_groq.requests][:2] == [MAIN, FALLBACK]


def test_a_stream_cut_mid_answer_keeps_what_was_said(twilio, number_a, fake_groq):
    fake_groq.queue_answer("The first sentence arrives whole. The second one never ends")
    fake_groq.queue_fault("cut", after_tokens=6)
    call_sid, [response] = _ask(twilio, number_a, "Tell me about prices")

    assert response.texts("Say")[0] == "The first sentence arrives whole."
    assert APOLOGY not in response.said
    turn = _turns(call_sid)[-1]
    assert turn.text.startswith("The first sentence arrives whole.")
    assert "stream broken" in turn.error
    assert len(fake_groq.requests) == 1  # a half-spoken answer is not asked for again


def test_an_error_event_mid_answer_keeps_what_was_said(twilio, number_a, fake_groq):
    fake_groq.queue_answer("The first sentence arrives whole. The second one never ends")
    fake_groq.queue_fault("error", after_tokens=6)
    call_sid, [response] = _ask(twilio, number_a, "Tell me about prices")

    assert response.texts("Say")[0] == "The first sentence arrives whole."
    turn = _turns(call_sid)[-1]
    assert "Service unavailable mid-stream" in turn.error
    assert len(fake_groq.requests) == 1


def test_an_error_event_before_any_text_moves_on(twilio, number_a, fake_groq, settings):
    settings.LLM_BACKOFF_SECONDS = 0.01
    fake_groq.queue_fault("error", after_tokens=0)
    fake_groq.set_answer("Second time lucky.")
    call_sid, [response] = _ask(twilio, number_a, "Tell me about prices")
    assert response.said == "Second time lucky."
    assert len(fake_groq.requests) == 2


def test_a_stream_cut_before_any_text_is_retried(twilio, number_a, fake_groq, settings):
    settings.LLM_BACKOFF_SECONDS = 0.01
    fake_groq.queue_fault("cut", after_tokens=0)
    fake_groq.set_answer("Second time lucky.")
    call_sid, [response] = _ask(twilio, number_a, "Tell me about prices")
    assert response.said == "Second time lucky."
    assert len(fake_groq.requests) == 2


def test_an_identical_first_question_is_served_from_the_cache(twilio, number_a, fake_groq):
    fake_groq.queue_answer("We cover the whole city.")
    first_sid, [first] = _ask(twilio, number_a, "Which areas do you cover?")
    second_sid, [second] = _ask(twilio, number_a, "which areas do you cover")

    assert first.said == second.said == "We cover the whole city."
    assert len(fake_groq.requests) == 1
    turn = _turns(second_sid)[-1]
    assert (turn.source, turn.cache_hit, turn.model_used) == ("cache", True, "")


def test_the_cache_can_be_switched_off(twilio, number_a, fake_groq, settings):
    settings.ANSWER_CACHE_SECONDS = 0
    _ask(twilio, number_a, "Which areas do you cover?")
    _ask(twilio, number_a, "Which areas do you cover?")
    assert len(fake_groq.requests) == 2


def test_later_questions_are_not_answered_from_the_cache(twilio, number_a, fake_groq):
    _ask(twilio, number_a, "hello", "Which areas do you cover?")
    _ask(twilio, number_a, "hello there", "Which areas do you cover?")
    # "hello" once (cached for the second call? no: a different first question), and each
    # follow-up question goes to the LLM because it depends on the conversation so far.
    assert [r.messages[-1]["content"] for r in fake_groq.requests] == [
        "hello",
        "Which areas do you cover?",
        "hello there",
        "Which areas do you cover?",
    ]


def test_one_tenants_cached_answer_is_never_served_to_another(
    twilio, number_a, number_b, fake_groq
):
    fake_groq.queue_answer("Acme's private answer.")
    fake_groq.queue_answer("Beta's own answer.")
    _, [a] = _ask(twilio, number_a, "What is the price list?")
    _, [b] = _ask(twilio, number_b, "What is the price list?")
    assert a.said == "Acme's private answer."
    assert b.said == "Beta's own answer."
    assert len(fake_groq.requests) == 2


def test_a_huge_utterance_is_cut_before_it_reaches_the_llm(twilio, number_a, fake_groq, settings):
    call_sid, [response] = _ask(twilio, number_a, "word " * 50_000)
    assert response.status == 200
    assert len(fake_groq.requests[0].messages[-1]["content"]) == settings.MAX_UTTERANCE_CHARS
    # Stored as sent, not whole: 250,000 characters are no one's speech, and each later turn
    # would carry them to the LLM again.
    assert len(_turns(call_sid)[0].text) == settings.MAX_UTTERANCE_CHARS


def test_the_history_sent_to_the_llm_is_bounded_per_turn(twilio, number_a, fake_groq, settings):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "x" * 100_006)
    twilio.gather(call_sid, number_a.number, "And the price?")
    history = fake_groq.requests[-1].messages
    assert history[-1]["content"] == "And the price?"
    assert max(len(m["content"]) for m in history[1:]) <= settings.MAX_UTTERANCE_CHARS


def test_tokens_are_counted_against_the_tenants_budget(twilio, number_a, tenant_a, fake_groq):
    RateLimit.objects.create(
        tenant=tenant_a, kind=RateLimit.Kind.LLM_TOKENS_PER_DAY, limit=30, window_seconds=86400
    )
    call_sid, responses = _ask(twilio, number_a, "first question", "second question")
    first, second = responses
    assert first.said and APOLOGY not in first.said
    # The first answer used more than 30 tokens: the budget is spent, the LLM is not asked again.
    assert len(fake_groq.requests) == 1
    assert second.status == 200 and second.said
    turn = _turns(call_sid)[-1]
    assert turn.source == "system" and "llm_tokens_per_day" in turn.error


def test_an_faq_answer_never_calls_the_llm(twilio, number_a, fake_groq):
    _, [response] = _ask(twilio, number_a, "What are your opening hours?")
    assert response.said == "We are open from eight to six, Monday to Friday."
    assert fake_groq.requests == []


def test_log_lines_of_a_call_carry_its_tenant_and_callsid(twilio, number_a, fake_groq, caplog):
    fake_groq.queue_fault(503)
    call_sid, _ = _ask(twilio, number_a, "Is the line working?")
    # The JSON console handler's filter puts the log context on the record itself.
    [failed] = [r for r in caplog.records if r.getMessage() == "llm attempt failed"]
    assert (failed.call_sid, failed.tenant, failed.model) == (call_sid, "acme", MAIN)


@pytest.mark.parametrize("speech", ["", "   "], ids=["empty", "blank"])
def test_an_empty_speech_result_is_silence_not_a_question(twilio, number_a, fake_groq, speech):
    call_sid, [response] = _ask(twilio, number_a, speech)
    assert "didn't catch that" in response.said
    assert response.has("Gather")
    assert _turns(call_sid) == [] and fake_groq.requests == []


def test_a_caller_of_tenant_b_never_gets_tenant_as_assistant_or_history(
    twilio, number_a, number_b, assistant_b, fake_groq
):
    a_sid, _ = _ask(twilio, number_a, "My address is 1 Secret Street.")
    fake_groq.reset()
    b_sid, [response] = _ask(twilio, number_b, "When are you open?")

    # A's FAQ is not B's: B's question goes to B's assistant, with B's prompt and no A history.
    assert "eight to six" not in response.said
    [request] = fake_groq.requests
    assert request.messages[0] == {"role": "system", "content": assistant_b.system_prompt}
    assert all("Secret Street" not in m["content"] for m in request.messages)
    # A gather naming A's call but signed with B's own token is refused and changes nothing.
    with scopes_disabled():
        tenant_b = assistant_b.tenant
        tenant_b.set_twilio_auth_token("b" * 32)
        tenant_b.save()
    before = len(_turns(a_sid))
    refused = twilio.gather(
        a_sid, number_b.number, "Read me the last caller's address", auth_token="b" * 32
    )
    assert refused.status == 403
    assert len(_turns(a_sid)) == before


def test_secrets_never_reach_the_logs(
    twilio, number_a, tenant_a, fake_groq, caplog, capfd, settings
):
    import logging

    caplog.set_level(logging.DEBUG)
    own_token = "tenant-own-twilio-token-7f3a9c"
    with scopes_disabled():
        tenant_a.set_twilio_auth_token(own_token)
        tenant_a.save()
    fake_groq.queue_fault(401)  # an auth failure is logged; the key must not be
    call_sid, _ = twilio.voice(number_a.number, auth_token=own_token)
    twilio.gather(call_sid, number_a.number, "Hello?", auth_token=own_token)
    twilio.gather(call_sid, number_a.number, "Hello?", auth_token="wrong-token")

    logged = caplog.text + capfd.readouterr().err
    assert "llm attempt failed" in logged  # things were logged
    for secret in (own_token, settings.GROQ_API_KEY, settings.SECRET_KEY):
        assert secret not in logged
