"""Tools in gather mode: the fake Groq server asks for tool calls through the real SDK, a real
HTTP server on loopback answers them, and the TwiML says what came of it."""

from __future__ import annotations

import json
import time

import pytest
from django.core.cache import cache
from django_scopes import scopes_disabled
from standardwebhooks.webhooks import Webhook

from calls import phrases
from calls.models import Call, Turn

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_answer_cache():
    cache.clear()
    yield
    cache.clear()


def turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call__call_sid=call_sid).order_by("sequence"))


def ask(twilio, number, question: str):
    call_sid, _ = twilio.voice(number.number)
    started = time.monotonic()
    response = twilio.gather(call_sid, number.number, question)
    return call_sid, response, time.monotonic() - started


def test_a_tool_result_changes_the_answer(twilio, number_a, tools_a, tool_server, fake_groq):
    call_sid, response, _ = ask(twilio, number_a, "Can I book a cleaning on Tuesday?")

    assert response.texts("Say") == ["Booked: cleaning on tuesday, reference AB12."]
    assert response.has("Gather")
    [request] = tool_server.received("/book")
    assert request.json()["arguments"] == {"service": "cleaning", "day": "tuesday"}
    assert request.json()["call"]["sid"] == call_sid
    assert request.json()["call"]["from"] == "+15551230000"
    assert request.headers["authorization"] == "Bearer acme-secret-token"
    with scopes_disabled():
        secret = tools_a["book"].get_signing_secret()
    Webhook(secret).verify(request.body, request.headers)  # raises if forged
    first, second = fake_groq.requests
    assert [t["function"]["name"] for t in first.body["tools"]][:1] == ["book_appointment"]
    assert second.messages[-2]["tool_calls"][0]["function"]["name"] == "book_appointment"
    assert second.messages[-1]["role"] == "tool"
    assert "reference AB12" in second.messages[-1]["content"]
    _, answer = turns(call_sid)
    assert answer.text == "Booked: cleaning on tuesday, reference AB12."
    [record] = answer.tool_calls
    assert record["name"] == "book_appointment" and record["status"] == "ok"
    assert record["arguments"] == {"service": "cleaning", "day": "tuesday"}
    assert "reference AB12" in record["result"] and record["ms"] >= 0
    assert answer.tokens_in and answer.source == "llm"


def test_a_wrong_signature_secret_does_not_verify(
    twilio, number_a, tools_a, tool_server, fake_groq
):
    ask(twilio, number_a, "Can I book a cleaning on Tuesday?")
    [request] = tool_server.received("/book")
    with scopes_disabled():
        other_secret = tools_a["stock"].get_signing_secret()
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook(other_secret).verify(request.body, request.headers)


def test_two_tools_in_one_turn_run_together(twilio, number_a, tools_a, tool_server, fake_groq):
    fake_groq.queue_tool_calls(
        [
            {"name": "book_appointment", "arguments": {"service": "repair", "day": "friday"}},
            {"name": "check_stock", "arguments": {"item": "boiler"}},
        ]
    )
    call_sid, response, _ = ask(twilio, number_a, "Book a repair and check the boilers")

    assert response.said == "Booked: repair on friday, reference AB12. We have 3 boilers in stock."
    records = turns(call_sid)[1].tool_calls
    assert [(r["name"], r["status"]) for r in records] == [
        ("book_appointment", "ok"),
        ("check_stock", "ok"),
    ]
    tool_messages = [m for m in fake_groq.requests[1].messages if m["role"] == "tool"]
    assert len(tool_messages) == 2


def test_a_slow_tool_gets_the_caller_a_filler_line_first(
    twilio, number_a, tools_a, tool_server, fake_groq
):
    fake_groq.queue_tool_calls([{"name": "track_van", "arguments": {"item": "van"}}])
    call_sid, response, _ = ask(twilio, number_a, "Where is the van?")

    assert response.texts("Say") == [phrases.CHECKING, "The van is 10 minutes away."]
    assert turns(call_sid)[1].tool_calls[0]["ms"] >= 2000


@pytest.mark.parametrize("name", ["check_invoice", "check_warranty"])
def test_a_failing_or_hanging_tool_gets_a_sensible_line_in_time(
    twilio, number_a, tools_a, tool_server, fake_groq, settings, name
):
    fake_groq.queue_tool_calls([{"name": name, "arguments": {"item": "my invoice"}}])
    call_sid, response, took = ask(twilio, number_a, "Is my invoice paid?")

    assert response.texts("Say")[-1] == "I'm sorry, I could not get that done just now."
    assert response.has("Gather")
    assert took < settings.WEBHOOK_DEADLINE_SECONDS
    [record] = turns(call_sid)[1].tool_calls
    assert record["status"] == ("error" if name == "check_invoice" else "timeout")
    told = json.loads(fake_groq.requests[1].messages[-1]["content"])
    assert "error" in told


def test_a_tool_that_is_down_for_good_leaves_no_silence(
    twilio, number_a, tools_a, tool_server, fake_groq
):
    """The tool fails and then the model fails too: the caller still hears a line."""

    def fail_and_take_the_model_down(request: dict) -> dict:
        fake_groq.queue_fault("500", count=10)  # every later attempt of either model fails
        return {"error": "database down"}

    tool_server.route("/fail", answer=fail_and_take_the_model_down, status=500)
    fake_groq.queue_tool_calls([{"name": "check_invoice", "arguments": {"item": "x"}}])
    call_sid, response, _ = ask(twilio, number_a, "Is my invoice paid?")
    assert response.said == phrases.TOOL_TROUBLE
    assert response.has("Gather")
    assert turns(call_sid)[1].tool_calls[0]["status"] == "error"


def test_invalid_arguments_are_not_sent_and_the_model_is_told(
    twilio, number_a, tools_a, tool_server, fake_groq
):
    fake_groq.queue_tool_calls(
        [
            {"name": "book_appointment", "arguments": '{"service": "cleaning"'},
            {"name": "book_appointment", "arguments": {"service": 5, "day": "monday"}},
        ]
    )
    call_sid, response, _ = ask(twilio, number_a, "Book something")

    assert tool_server.received("/book") == []
    records = turns(call_sid)[1].tool_calls
    assert [r["status"] for r in records] == ["invalid", "invalid"]
    assert "not valid JSON" in records[0]["result"]
    assert "5 is not of type 'string'" in records[1]["result"]
    assert response.said.startswith("I'm sorry")


def test_a_tool_the_assistant_does_not_have_is_refused(
    twilio, number_a, tools_a, tools_b, tool_server, fake_groq
):
    fake_groq.queue_tool_calls([{"name": "delete_everything", "arguments": {}}])
    call_sid, response, _ = ask(twilio, number_a, "Do it")
    assert turns(call_sid)[1].tool_calls[0]["status"] == "refused"
    assert tool_server.received() == []
    assert response.has("Gather")


def test_a_transfer_asked_for_in_words_dials_the_destination(twilio, number_a, tools_a, fake_groq):
    call_sid, response, _ = ask(twilio, number_a, "Can I speak to someone in billing?")

    assert response.texts("Say") == ["Let me transfer you to billing now."]
    assert response.texts("Dial") == ["+15005550003"]
    assert not response.has("Gather")
    with scopes_disabled():
        assert Call.objects.get(call_sid=call_sid).outcome == Call.Outcome.TRANSFERRED
    assert turns(call_sid)[1].tool_calls[0]["arguments"] == {"destination": "billing"}


def test_end_call_says_goodbye_and_hangs_up(twilio, number_a, tools_a, fake_groq):
    call_sid, response, _ = ask(twilio, number_a, "No, that's all, goodbye")

    assert " ".join(response.texts("Say")) == phrases.GOODBYE
    assert response.has("Hangup") and not response.has("Gather")
    assert turns(call_sid)[1].tool_calls[0]["name"] == "end_call"


def test_knowledge_answers_and_another_tenants_is_never_used(
    twilio, number_a, tools_a, tools_b, tool_server, fake_groq
):
    call_sid, response, _ = ask(twilio, number_a, "Where can customers park?")

    assert response.said == "Customers park for free behind the workshop on Mill Lane."
    [record] = turns(call_sid)[1].tool_calls
    assert record["name"] == "lookup_knowledge"
    assert [p["title"] for p in record["passages"]] == ["Parking"]
    assert "Bravo" not in fake_groq.requests[1].messages[-1]["content"]


def test_another_tenants_tool_is_never_offered_or_called(
    twilio, number_a, tools_a, tools_b, tool_server, fake_groq
):
    ask(twilio, number_a, "Can I book a cleaning on Tuesday?")
    offered = fake_groq.requests[0].body["tools"]
    assert [t["function"]["name"] for t in offered].count("book_appointment") == 1
    assert tool_server.received("/bravo") == []
    assert len(tool_server.received("/book")) == 1


def test_the_call_page_and_the_live_dashboard_show_the_tool_calls(
    client, alice, charlie, twilio, number_a, tools_a, tool_server, fake_groq
):
    call_sid, _, _ = ask(twilio, number_a, "Can I book a cleaning on Tuesday?")
    with scopes_disabled():
        call = Call.objects.get(call_sid=call_sid)
    client.force_login(alice)
    page = client.get(f"/dashboard/calls/{call.id}/").content.decode()
    assert "<strong>book_appointment</strong>" in page and "→ ok" in page
    assert "reference AB12" in page
    live = client.get("/dashboard/").content.decode()
    assert "tools: book_appointment ok" in live
    client.force_login(charlie)
    assert client.get(f"/dashboard/calls/{call.id}/").status_code == 404


def test_a_tool_on_a_private_address_is_refused_without_a_request(
    twilio, number_a, tools_a, tool_server, fake_groq, settings
):
    settings.OUTBOUND_ALLOWED_NETWORKS = []  # as in production: loopback is off limits
    call_sid, response, _ = ask(twilio, number_a, "Can I book a cleaning on Tuesday?")

    assert tool_server.received() == []
    [record] = turns(call_sid)[1].tool_calls
    assert record["status"] == "refused" and "not allowed" in record["result"]
    assert response.said == "I'm sorry, I could not get that done just now."


def test_the_calls_api_shows_the_tool_calls(
    api, key_a, key_b, twilio, number_a, tools_a, fake_groq
):
    call_sid, _, _ = ask(twilio, number_a, "Can I book a cleaning on Tuesday?")
    with scopes_disabled():
        call = Call.objects.get(call_sid=call_sid)
    body = api(key=key_a).get(f"/api/v1/calls/{call.id}/").json()
    [record] = body["turns"][1]["tool_calls"]
    assert record["name"] == "book_appointment" and record["status"] == "ok"
    assert api(key=key_b).get(f"/api/v1/calls/{call.id}/").status_code == 404
