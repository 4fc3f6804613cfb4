"""The caller's wait while the LLM provider fails: within 5 s of the end of the caller's turn the
caller hears the assistant (the answer, the fallback model's answer or the apology), in gather
and relay mode, and no more requests reach the provider than the policy allows.

Every fault is made at the wire by the fake Groq server, at Groq-like speed (150 ms to the first
token, 280 tokens/s); the platform runs with its default LLM settings. In relay mode the wait
runs to the first words of the answer or the apology: the "one moment" filler does not count.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from asgiref.sync import async_to_sync
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Turn
from calls.phrases import APOLOGY, ONE_MOMENT
from calls.tests.relay_helpers import RelayClient, relay_socket, text_of

MAIN = "llama-3.3-70b-versatile"
FALLBACK = "llama-3.1-8b-instant"
CALLER_WAIT = 5.0
TURNS = 2

FAULTS = {
    "429 on every request": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["429"]),
    "hang on every request": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["hang"]),
    "main model hangs": lambda fake: fake.queue_fault("hang", model=MAIN, count=100),
    "500 on every request": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["500"]),
    "stream cut mid-answer": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["cut"]),
}
# What the caller hears first under each fault.
EXPECTED = {
    "429 on every request": "apology",
    "hang on every request": "apology",
    "main model hangs": "fallback",
    "500 on every request": "apology",
    "stream cut mid-answer": "main",
}


@pytest.fixture
def faulty_groq(fake_groq, request):
    fake_groq.set_latency(ttft_ms=150, tokens_per_second=280)
    FAULTS[request.param](fake_groq)
    return fake_groq


def _assistant_turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        turns = Turn.objects.filter(call__call_sid=call_sid, role=Turn.Role.ASSISTANT)
        return list(turns.order_by("sequence"))


def _check_requests(fake_groq, fault: str, settings) -> None:
    """No more requests per turn than the policy allows."""
    per_model = Counter(r.model for r in fake_groq.requests)
    assert set(per_model) <= {MAIN, FALLBACK}
    assert max(per_model.values()) <= settings.LLM_MAX_ATTEMPTS * TURNS
    if fault in ("hang on every request", "main model hangs"):
        assert per_model == {MAIN: TURNS, FALLBACK: TURNS}  # one deadline: asked once each
    if fault == "stream cut mid-answer":
        assert per_model == {MAIN: TURNS}  # a half-said answer is not asked for again


def _check_turn(turn: Turn, expected: str) -> None:
    if expected == "apology":
        assert turn.source == Turn.Source.APOLOGY and turn.error
    else:
        assert turn.source == Turn.Source.LLM
        assert turn.model_used == (MAIN if expected == "main" else FALLBACK)


@pytest.mark.django_db
@pytest.mark.parametrize("faulty_groq", FAULTS, indirect=True)
def test_in_gather_mode_each_fault_is_answered_within_5_s(
    twilio, number_a, faulty_groq, settings, request
):
    fault = request.node.callspec.params["faulty_groq"]
    call_sid, _ = twilio.voice(number_a.number)
    for turn in range(TURNS):
        started = time.monotonic()
        response = twilio.gather(call_sid, number_a.number, f"Can you fix my boiler, {turn}?")
        waited = time.monotonic() - started

        assert response.status == 200 and response.has("Gather")
        assert waited < CALLER_WAIT, f"{fault}: the caller waited {waited:.1f} s"
        assert response.said
        if EXPECTED[fault] == "apology":
            assert response.said == APOLOGY
    for turn in _assistant_turns(call_sid):
        _check_turn(turn, EXPECTED[fault])
    _check_requests(faulty_groq, fault, settings)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("faulty_groq", FAULTS, indirect=True)
def test_in_relay_mode_each_fault_is_answered_within_5_s(
    twilio, assistant_a, number_a, faulty_groq, settings, request
):
    fault = request.node.callspec.params["faulty_groq"]
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.RELAY
        assistant_a.save()
    call_sid, response = twilio.voice(number_a.number)
    socket_url, _, _ = relay_socket(response)

    async def conversation() -> list[tuple[float, list[dict]]]:
        client = RelayClient(socket_url)
        assert (await client.connect())[0]
        await client.setup(call_sid)
        answers = []
        for turn in range(TURNS):
            started = time.monotonic()
            await client.prompt(f"Can you fix my boiler, {turn}?")
            frames, waited = [], None
            while not frames or not frames[-1].get("last"):
                frames.append(await client.receive())
                words = frames[-1].get("token", "").strip()
                if waited is None and words and words != ONE_MOMENT:
                    waited = time.monotonic() - started
            answers.append((waited, frames))
        await client.close()
        return answers

    for waited, frames in async_to_sync(conversation)():
        assert waited is not None, f"{fault}: no words in {frames}"
        assert waited < CALLER_WAIT, f"{fault}: the caller waited {waited:.1f} s"
        if EXPECTED[fault] == "apology":
            assert APOLOGY in text_of(frames)
    for turn in _assistant_turns(call_sid):
        _check_turn(turn, EXPECTED[fault])
    _check_requests(faulty_groq, fault, settings)
