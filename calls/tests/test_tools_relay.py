"""Tools in relay mode: ConversationRelay's side played over a real WebSocket against the ASGI
app, the fake Groq server asking for tool calls, a real HTTP tool server on loopback."""

from __future__ import annotations

import json
import time

import pytest
from asgiref.sync import async_to_sync
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls import phrases
from calls.models import Call, Turn
from calls.tests.relay_helpers import RelayClient, relay_socket, text_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def relay_a(assistant_a, number_a, tools_a) -> AssistantConfig:
    with scopes_disabled():
        assistant_a.mode = AssistantConfig.Mode.RELAY
        assistant_a.save()
    return assistant_a


def converse(twilio, number, *prompts: str) -> tuple[str, list[list[dict]], list[float]]:
    """One relay call: each prompt's frames (to `last: true` or an `end`) and seconds taken."""
    call_sid, response = twilio.voice(number.number)
    socket_url, _, _ = relay_socket(response)

    async def session():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        answers, took = [], []
        for prompt in prompts:
            started = time.monotonic()
            await client.prompt(prompt)
            frames = await client.answer()
            if frames[-1]["type"] != "end" and not await client.nothing_more(0.2):
                frames.append(await client.receive())  # an `end` after the last words
            answers.append(frames)
            took.append(time.monotonic() - started)
        await client.close()
        return answers, took

    answers, took = async_to_sync(session)()
    return call_sid, answers, took


def assistant_turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(
            Turn.objects.filter(call__call_sid=call_sid, role="assistant").order_by("sequence")
        )


def test_a_tool_result_changes_the_streamed_answer(
    twilio, relay_a, number_a, tool_server, fake_groq
):
    call_sid, [frames], _ = converse(twilio, number_a, "Can I book a cleaning on Tuesday?")

    assert text_of(frames) == "Booked: cleaning on tuesday, reference AB12."
    assert frames[-1]["last"] is True
    [turn] = assistant_turns(call_sid)
    assert turn.tool_calls[0]["name"] == "book_appointment"
    assert turn.tool_calls[0]["status"] == "ok"
    assert len(tool_server.received("/book")) == 1


def test_two_tools_in_one_turn(twilio, relay_a, number_a, tool_server, fake_groq):
    fake_groq.queue_tool_calls(
        [
            {"name": "check_stock", "arguments": {"item": "boiler"}},
            {"name": "book_appointment", "arguments": {"service": "fitting", "day": "monday"}},
        ]
    )
    call_sid, [frames], _ = converse(twilio, number_a, "Do you have boilers? Book a fitting.")

    assert (
        text_of(frames) == "We have 3 boilers in stock. Booked: fitting on monday, reference AB12."
    )
    assert [r["name"] for r in assistant_turns(call_sid)[0].tool_calls] == [
        "check_stock",
        "book_appointment",
    ]


def test_a_slow_tool_is_covered_by_a_filler_line(twilio, relay_a, number_a, tool_server, fake_groq):
    fake_groq.queue_tool_calls([{"name": "track_van", "arguments": {"item": "van"}}])
    call_sid, [frames], _ = converse(twilio, number_a, "Where is the van?")

    texts = [f["token"] for f in frames if f["type"] == "text" and f["token"]]
    assert texts[0] == phrases.CHECKING + " "
    assert text_of(frames) == phrases.CHECKING + " The van is 10 minutes away."


@pytest.mark.parametrize("name,status", [("check_invoice", "error"), ("check_warranty", "timeout")])
def test_a_failing_or_hanging_tool_gets_a_sensible_line(
    twilio, relay_a, number_a, tool_server, fake_groq, name, status
):
    fake_groq.queue_tool_calls([{"name": name, "arguments": {"item": "invoice"}}])
    call_sid, [frames], [took] = converse(twilio, number_a, "Is my invoice paid?")

    assert text_of(frames).endswith("I'm sorry, I could not get that done just now.")
    assert took < 5
    assert assistant_turns(call_sid)[0].tool_calls[0]["status"] == status


def test_invalid_arguments_never_reach_the_tool(twilio, relay_a, number_a, tool_server, fake_groq):
    fake_groq.queue_tool_calls([{"name": "book_appointment", "arguments": {"day": "monday"}}])
    call_sid, [frames], _ = converse(twilio, number_a, "Book it")

    assert tool_server.received("/book") == []
    [record] = assistant_turns(call_sid)[0].tool_calls
    assert record["status"] == "invalid" and "'service' is a required property" in record["result"]
    assert text_of(frames).startswith("I'm sorry")


def test_a_transfer_asked_for_in_words_hands_off_to_the_destination(
    twilio, relay_a, number_a, fake_groq
):
    call_sid, [frames], _ = converse(twilio, number_a, "Put me through to the front desk please")

    assert text_of(frames) == "Let me transfer you to front desk now."
    end = frames[-1]
    assert end["type"] == "end"
    handoff = json.loads(end["handoffData"])
    assert handoff["transfer"] is True and handoff["destination"] == "front desk"
    params = twilio.params(
        call_sid,
        to=number_a.number,
        CallStatus="in-progress",
        SessionStatus="ended",
        HandoffData=end["handoffData"],
    )
    response = twilio.post("/twilio/relay-action", params)
    assert response.texts("Dial") == ["+15005550002"]
    with scopes_disabled():
        assert Call.objects.get(call_sid=call_sid).outcome == Call.Outcome.TRANSFERRED


def test_end_call_says_goodbye_then_ends_the_session(twilio, relay_a, number_a, fake_groq):
    call_sid, [frames], _ = converse(twilio, number_a, "That's all, bye")

    assert text_of(frames) == phrases.GOODBYE
    assert frames[-1]["type"] == "end"
    assert json.loads(frames[-1]["handoffData"])["hangup"] is True
    params = twilio.params(
        call_sid, to=number_a.number, HandoffData=frames[-1]["handoffData"], SessionStatus="ended"
    )
    response = twilio.post("/twilio/relay-action", params)
    assert response.has("Hangup") and not response.has("Dial")


def test_a_transfer_to_a_destination_of_another_assistant_dials_nobody(
    twilio, relay_a, number_a, fake_groq
):
    """Handoff data naming a destination the call's assistant lacks dials no one."""
    call_sid, _ = twilio.voice(number_a.number)
    handoff = json.dumps({"transfer": True, "destination": "Bravo kitchen"})
    params = twilio.params(call_sid, to=number_a.number, HandoffData=handoff)
    response = twilio.post("/twilio/relay-action", params)
    assert not response.has("Dial") and response.has("Hangup")


def test_knowledge_of_another_tenant_is_never_found(
    twilio, relay_a, number_a, tools_b, tool_server, fake_groq
):
    call_sid, [frames], _ = converse(twilio, number_a, "Where do Bravo customers park?")

    [record] = assistant_turns(call_sid)[0].tool_calls
    assert record["name"] == "lookup_knowledge"
    assert all(p["title"] == "Parking" for p in record["passages"])
    assert "secret garage" not in text_of(frames)
