"""Stream mode end to end: a real daphne process on the test database; Groq and Deepgram replaced
at the wire by loopback servers speaking their protocols; Twilio's side played over real HTTP
and a real Media Streams WebSocket, with espeak-ng speech sent as mu-law frames in real time.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connections
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call, Turn
from devtools.media_simulator import run_stream
from devtools.simulator import TwilioSimulator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stream_a(assistant_a, number_a) -> AssistantConfig:
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.STREAM
        assistant_a.greeting = "Acme Plumbing."
        assistant_a.save()
    return assistant_a


def stored_once_closed(call_sid: str) -> tuple[Call, list[Turn]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for connection in connections.all():
            connection.close()  # read what daphne committed
        with scopes_disabled():
            call = Call.objects.get(call_sid=call_sid)
            if call.status == Call.Status.COMPLETED:
                return call, list(call.turns.order_by("sequence"))
        time.sleep(0.1)
    raise AssertionError(f"call {call_sid} was not closed")


def play(daphne_server, number, **options):
    simulator = TwilioSimulator(
        base_url=daphne_server.base_url, auth_token=settings.TWILIO_AUTH_TOKEN
    )
    try:
        return run_stream(simulator, to=number.number, from_="+15551234567", **options)
    finally:
        simulator.close()


def test_a_stream_call_of_several_turns_through_daphne(
    daphne_server, stream_a, number_a, fake_groq, fake_deepgram
):
    fake_deepgram.queue_transcript("When are you open?", "Can you fix a leaking tap?")
    fake_groq.queue_answer("Yes, we can fix it today. Shall I send someone?")

    call = play(
        daphne_server, number_a, utterances=["When are you open?", "Can you fix a leaking tap?"]
    )

    assert call.refused == "", daphne_server.log()
    assert call.greeting.audio, "the greeting was spoken"
    faq, llm_turn = call.turns
    for turn in call.turns:
        assert len(turn.audio) > 8000, "at least a second of the assistant's voice"
        assert turn.voice_to_voice_ms is not None
        assert turn.marks >= 1 and not turn.cleared
    assert llm_turn.marks == 2  # a mark after each sentence, echoed once played
    [listen] = fake_deepgram.listens
    assert listen.params["encoding"] == "mulaw" and listen.params["sample_rate"] == "8000"
    assert listen.params["endpointing"] == "300" and listen.params["interim_results"] == "true"
    assert [t.transcript for t in listen.turns] == [
        "When are you open?",
        "Can you fix a leaking tap?",
    ]
    assert fake_deepgram.spoken == [
        "Acme Plumbing.",
        "We are open from eight to six, Monday to Friday.",
        "Yes, we can fix it today.",
        "Shall I send someone?",
    ]

    record, turns = stored_once_closed(call.call_sid)
    assert (record.mode, record.outcome) == ("stream", "completed")
    assert [(t.role, t.text) for t in turns] == [
        ("caller", "When are you open?"),
        ("assistant", "We are open from eight to six, Monday to Friday."),
        ("caller", "Can you fix a leaking tap?"),
        ("assistant", "Yes, we can fix it today. Shall I send someone?"),
    ]
    answer = turns[3]
    assert answer.source == "llm" and not answer.interrupted
    # Timings from the moment the caller stopped talking, in the order they happen.
    assert 0 < answer.transcript_final_ms <= answer.llm_first_token_ms
    assert answer.llm_first_token_ms <= answer.first_audio_ms <= answer.response_sent_ms
    assert answer.response_sent_ms <= answer.last_token_sent_ms
