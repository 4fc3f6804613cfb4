"""Model routing: short, simple turns go to the assistant's fast model, the rest to its main one;
the decision is stored on the turn, read through the API and shown on the dashboard.

The calls run through the real gather webhook and the real groq SDK against the fake Groq server.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django_scopes import scopes_disabled

from assistants.faq import FAQ, normalize
from calls import routing
from calls.models import Turn

pytestmark = pytest.mark.django_db

MAIN = "llama-3.3-70b-versatile"
FAST = "openai/gpt-oss-20b"
CONFIG = {"model": MAIN, "fallback_model": "llama-3.1-8b-instant", "fast_model": FAST}
LONG_QUESTION = (
    "My boiler started making a loud banging noise last night and now the radiators upstairs "
    "stay cold while the ones downstairs are hot, what should I do about it"
)


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fast_assistant(assistant_a):
    with scopes_disabled():
        assistant_a.fast_model = FAST
        assistant_a.save()
    return assistant_a


NO_FAQ = FAQ()


def _route(utterance: str, *, faq: FAQ = NO_FAQ, tools: frozenset[str] = frozenset(), **config):
    return routing.route(
        config={**CONFIG, **config}, utterance=utterance, faq=faq, tool_names=tools
    )


def _assistant_turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(
            Turn.objects.filter(call__call_sid=call_sid, role=Turn.Role.ASSISTANT).order_by(
                "sequence"
            )
        )


# --- the rule ------------------------------------------------------------------------------


def test_a_short_turn_goes_to_the_fast_model_with_the_main_model_as_its_fallback():
    chosen = _route("Are you open on Sunday?")
    assert (chosen.model, chosen.fallback_model) == (FAST, MAIN)
    assert (chosen.route, chosen.reason) == ("fast", "short")


def test_a_long_turn_goes_to_the_main_model(settings):
    settings.ROUTING_SHORT_WORDS = 12
    chosen = _route(LONG_QUESTION)
    assert (chosen.model, chosen.fallback_model) == (MAIN, "llama-3.1-8b-instant")
    assert (chosen.route, chosen.reason) == ("main", "long")


def test_the_word_limit_is_a_setting(settings):
    settings.ROUTING_SHORT_WORDS = 3
    assert _route("Are you open on Sunday?").reason == "long"
    assert _route("Open on Sunday?").reason == "short"


def test_a_short_turn_that_names_a_tool_goes_to_the_main_model():
    tools = routing.tool_words(
        [
            {"type": "function", "function": {"name": "book_appointment"}},
            {"type": "function", "function": {"name": "checkStock"}},
            {"type": "function", "function": {"name": "end_call"}},
        ]
    )
    assert tools == {"book", "appointment", "stock"}  # "check", "end", "call" tell nothing
    booking = _route("Can I book a visit tomorrow?", tools=tools)
    assert (booking.model, booking.route, booking.reason) == (MAIN, "main", "tool-named: book")
    assert _route("Do you have boilers in stock?", tools=tools).reason == "tool-named: stock"
    assert _route("Thanks, goodbye!", tools=tools).reason == "short"


def test_a_longer_turn_near_an_faq_question_goes_to_the_fast_model(settings):
    settings.ROUTING_SHORT_WORDS = 8
    faq = FAQ(((tuple(map(normalize, ["opening hours on saturday"])), "9 to 5."),))
    near = "I wanted to ask you about your opening hours this coming saturday please"
    assert (_route(near, faq=faq).model, _route(near, faq=faq).reason) == (FAST, "faq-near")
    assert _route(near).reason == "long"  # without the FAQ: just long
    assert _route(LONG_QUESTION, faq=faq).reason == "long"  # more than twice the limit


def test_without_a_fast_model_every_turn_goes_to_the_main_model_unrouted():
    for config in ({"fast_model": ""}, {"fast_model": MAIN}):
        chosen = _route("Hi!", **config)
        assert (chosen.model, chosen.route, chosen.reason) == (MAIN, "", "")
        assert chosen.fallback_model == "llama-3.1-8b-instant"


# --- calls ---------------------------------------------------------------------------------


def test_a_short_question_is_answered_by_the_fast_model_and_the_turn_says_why(
    twilio, number_a, fast_assistant, fake_groq
):
    fake_groq.set_answer("Yes, from nine to five.")
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "Are you open on Sunday?")
    twilio.gather(call_sid, number_a.number, LONG_QUESTION)

    assert response.said == "Yes, from nine to five."
    assert [r.model for r in fake_groq.requests] == [FAST, MAIN]
    short, long = _assistant_turns(call_sid)
    assert (short.model_used, short.route, short.route_reason) == (FAST, "fast", "short")
    assert (long.model_used, long.route, long.route_reason) == (MAIN, "main", "long")


def test_a_failing_fast_model_is_replaced_by_the_main_model(
    twilio, number_a, fast_assistant, fake_groq, settings
):
    fake_groq.queue_fault(400, model=FAST)  # permanent: no retry of the fast model
    fake_groq.queue_answer("The main model answers.", model=MAIN)
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "Are you open on Sunday?")

    assert response.said == "The main model answers."
    assert [r.model for r in fake_groq.requests] == [FAST, MAIN]
    [turn] = _assistant_turns(call_sid)
    assert (turn.model_used, turn.route, turn.route_reason) == (MAIN, "fast", "short")
    assert f"fallback_model:{MAIN}" in turn.fallbacks


def test_an_faq_answer_is_not_routed(twilio, number_a, fast_assistant, fake_groq):
    with scopes_disabled():
        fast_assistant.faq_entries.create(
            tenant=fast_assistant.tenant, patterns="opening hours", answer="Nine to five."
        )
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "What are your opening hours?")
    [turn] = _assistant_turns(call_sid)
    assert (turn.source, turn.route, turn.route_reason, turn.model_used) == ("faq", "", "", "")
    assert fake_groq.requests == []


def test_the_api_and_the_dashboard_show_the_routing(
    twilio, number_a, fast_assistant, fake_groq, api, alice, charlie, settings
):
    settings.ANALYTICS_CACHE_SECONDS = 0
    fake_groq.set_answer("Sure.")
    call_sid, _ = twilio.voice(number_a.number)
    for question in ("Open today?", "Open tomorrow?", LONG_QUESTION):
        twilio.gather(call_sid, number_a.number, question)
    with scopes_disabled():
        call = Turn.objects.filter(call__call_sid=call_sid).first().call

    body = api(alice).get(f"/api/v1/calls/{call.id}/").json()
    routed = [(t["model_used"], t["route"], t["route_reason"]) for t in body["turns"][1::2]]
    assert routed == [(FAST, "fast", "short"), (FAST, "fast", "short"), (MAIN, "main", "long")]

    page = _logged_in(alice).get("/dashboard/?period=today")
    split = page.context["routing"]
    assert split["turns"] == 3
    assert [(m["model"], m["turns"], m["fast"]) for m in split["models"]] == [
        (FAST, 2, 2),
        (MAIN, 1, 0),
    ]
    assert split["models"][0]["share"] == pytest.approx(2 / 3)
    assert split["models"][0]["first_token_p50"] is not None
    assert {(r["reason"], r["turns"]) for r in split["reasons"]} == {("short", 2), ("long", 1)}
    assert FAST in page.content.decode()
    figures = _logged_in(alice).get("/dashboard/figures/?period=today").json()
    assert figures["routing"]["turns"] == 3

    outsider = _logged_in(charlie).get("/dashboard/?period=today")
    assert outsider.context["routing"] == {"turns": 0, "models": [], "reasons": []}
    assert api(charlie).get(f"/api/v1/calls/{call.id}/").status_code == 404


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client
