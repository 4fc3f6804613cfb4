"""Knowledge put into the prompt: passages that match the caller's words strongly go into the
system prompt before the model is asked (no tool round trip), and the turn keeps them."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from calls.models import Turn
from calls.tests.conftest import FakeTwilio
from knowledge.services import document_create
from tools.services import builtin_tools_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def knowing_a(assistant_a, tenant_b):
    with scopes_disabled():
        builtin_tools_set(assistant=assistant_a, knowledge_in_prompt=True)
        document_create(
            tenant=assistant_a.tenant,
            title="Emergencies",
            text="Emergency callouts cost ninety pounds and arrive within two hours.",
        )
        document_create(
            tenant=tenant_b, title="Bravo", text="Emergency cakes cost ten pounds at Bravo."
        )
    return assistant_a


def test_strongly_matching_passages_are_in_the_prompt(client, knowing_a, number_a, fake_groq):
    twilio = FakeTwilio(client)
    fake_groq.queue_answer("An emergency callout is ninety pounds.")
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "How much is an emergency callout?")

    assert response.said == "An emergency callout is ninety pounds."
    [request] = fake_groq.requests
    system = request.messages[0]["content"]
    assert "Emergency callouts cost ninety pounds" in system
    assert "Bravo" not in system
    assert "tools" not in request.body  # no tool is switched on
    with scopes_disabled():
        turn = Turn.objects.get(call__call_sid=call_sid, role="assistant")
    assert [p["title"] for p in turn.passages] == ["Emergencies"]


def test_words_that_match_nothing_leave_the_prompt_alone(client, knowing_a, number_a, fake_groq):
    twilio = FakeTwilio(client)
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "Do you sell garden gnomes?")
    [request] = fake_groq.requests
    assert request.messages[0]["content"] == "You are Acme Plumbing's receptionist."
