"""Test scenarios: checks pass and fail for the right reasons, an LLM-played caller, the judge,
scenarios required before publishing, and the command's exit status."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_scopes import scopes_disabled

from assistants import versions
from assistants.services import assistant_update
from rehearsals import scenarios
from rehearsals.models import Scenario, ScenarioRun

pytestmark = pytest.mark.django_db

CALLER_MODEL = "openai/gpt-oss-20b"
BOOKED = '{"message": "Booked: cleaning on Tuesday, reference ZZ9."}'


@pytest.fixture(autouse=True)
def _scenario_model(settings):
    settings.SCENARIO_MODEL = CALLER_MODEL


def scenario(assistant, **fields) -> Scenario:
    fields.setdefault("name", "booking")
    fields.setdefault("tool_answers", {"book_appointment": BOOKED})
    with scopes_disabled():
        made = Scenario(tenant=assistant.tenant, assistant=assistant, **fields)
        made.full_clean()
        made.save()
        return made


def run(made: Scenario) -> ScenarioRun:
    with scopes_disabled():
        candidate, version, label = scenarios.candidate_named(
            assistant=made.assistant, name="draft"
        )
        return scenarios.scenario_run(scenario=made, candidate=candidate, label=label)


def test_a_scripted_booking_passes_its_checks_without_calling_the_tool(
    assistant_a, tools_a, fake_groq, tool_server
):
    made = scenario(
        assistant_a,
        lines=["Can I book a cleaning on Tuesday?"],
        checks=[
            {"kind": "contains", "text": "reference zz9"},
            {"kind": "not_contains", "text": "sorry"},
            {"kind": "regex", "pattern": r"ZZ\d"},
            {"kind": "tool_called", "name": "book_appointment", "arguments": {"day": "tues.*"}},
        ],
    )

    result = run(made)

    assert result.passed, result.results
    assert [line["role"] for line in result.transcript] == ["assistant", "caller", "assistant"]
    assert result.transcript[2]["text"] == "Booked: cleaning on Tuesday, reference ZZ9."
    assert tool_server.received("/book") == []  # the scenario's answer, not the tenant's server
    assert result.results[3]["reason"].startswith("book_appointment called with")


def test_failing_checks_say_why(assistant_a, tools_a, fake_groq):
    made = scenario(
        assistant_a,
        lines=["Can I book a cleaning on Tuesday?"],
        checks=[
            {"kind": "contains", "text": "Wednesday"},
            {"kind": "not_contains", "text": "booked"},
            {"kind": "tool_called", "name": "book_appointment", "arguments": {"day": "friday"}},
            {"kind": "tool_called", "name": "check_stock"},
            {"kind": "transferred"},
            {"kind": "contains", "text": "ZZ9", "turn": 5},
        ],
    )

    result = run(made)

    reasons = [r["reason"] for r in result.results]
    assert not result.passed
    assert [r["passed"] for r in result.results] == [False] * 6
    assert reasons[0] == "no answer containing 'Wednesday'"
    assert reasons[1].startswith("an answer contains 'booked'")
    assert "not {'day': 'friday'}" in reasons[2]
    assert reasons[3] == "check_stock was not called (called: ['book_appointment'])"
    assert reasons[4] == "the caller was not transferred"
    assert reasons[5] == "there is no answer number 5"


def test_transferred_and_ended_follow_the_assistant(assistant_a, tools_a, fake_groq):
    transfer = scenario(
        assistant_a,
        name="transfer",
        lines=["I want to talk to a real person at the front desk", "Hello?"],
        checks=[{"kind": "transferred"}, {"kind": "ended"}],
    )
    goodbye = scenario(
        assistant_a, name="goodbye", lines=["That's all, goodbye"], checks=[{"kind": "ended"}]
    )

    transferred, ended = run(transfer), run(goodbye)

    assert [r["passed"] for r in transferred.results] == [True, False]
    assert len(transferred.transcript) == 3  # the call ended with the transfer
    assert ended.passed


def test_the_judge_gives_a_verdict_with_its_reason(assistant_a, fake_groq):
    made = scenario(
        assistant_a,
        lines=["Can someone fix my boiler?"],
        checks=[{"kind": "judge", "question": "Did the assistant offer a time?"}],
    )
    fake_groq.queue_answer(
        '{"answer": "no", "reason": "It never offered a time."}', model=CALLER_MODEL
    )

    refused, accepted = run(made), run(made)

    assert not refused.passed
    assert refused.results[0]["reason"] == "judge: no. It never offered a time."
    assert accepted.passed and accepted.results[0]["reason"].startswith("judge: yes.")
    judged = [r for r in fake_groq.requests if r.model == CALLER_MODEL]
    assert "Did the assistant offer a time?" in judged[0].messages[-1]["content"]
    assert "caller: Can someone fix my boiler?" in judged[0].messages[-1]["content"]


def test_an_llm_played_caller_pursues_its_goal(assistant_a, tools_a, fake_groq):
    made = scenario(
        assistant_a,
        lines=[],
        caller_goal="Book a cleaning for Tuesday.",
        caller_persona="A busy homeowner.",
        max_turns=4,
        checks=[{"kind": "tool_called", "name": "book_appointment"}],
    )
    fake_groq.queue_answer("Can I book a cleaning on Tuesday?", model=CALLER_MODEL)
    fake_groq.queue_answer("DONE", model=CALLER_MODEL)

    result = run(made)

    assert result.passed, result.results
    callers = [line["text"] for line in result.transcript if line["role"] == "caller"]
    assert callers == ["Can I book a cleaning on Tuesday?"]
    first = next(r for r in fake_groq.requests if r.model == CALLER_MODEL)
    assert "Book a cleaning for Tuesday." in first.messages[0]["content"]
    assert "A busy homeowner." in first.messages[0]["content"]


def test_bad_checks_are_refused_with_reasons(assistant_a):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        scenario(
            assistant_a,
            lines=["Hi"],
            checks=[{"kind": "sounds_nice"}, {"kind": "regex", "pattern": "("}],
        )
    text = str(caught.value)
    assert "Check 1: give a kind" in text and "Check 2: the pattern is not a valid" in text


def test_required_scenarios_must_pass_before_publishing(assistant_a, tools_a, fake_groq):
    scenario(
        assistant_a,
        lines=["Can I book a cleaning on Tuesday?"],
        checks=[{"kind": "contains", "text": "reference ZZ9"}],
    )
    with scopes_disabled():
        v1 = versions.version_publish(assistant=assistant_a)
        assistant_update(assistant=assistant_a, scenarios_required=True)
        with scopes_disabled():
            from tools.models import HttpTool

            HttpTool.objects.filter(assistant=assistant_a, name="book_appointment").delete()

        with pytest.raises(versions.PublishRefused, match="scenario 'booking' failed"):
            versions.version_publish(assistant=assistant_a)
        assistant_a.refresh_from_db()
        assert assistant_a.published_version == v1

        Scenario.objects.filter(assistant=assistant_a).update(
            checks=[{"kind": "not_contains", "text": "reference ZZ9"}]
        )
        assert versions.version_publish(assistant=assistant_a).number == 2


def test_the_command_exits_non_zero_when_a_scenario_fails(assistant_a, tools_a, fake_groq, capsys):
    scenario(
        assistant_a,
        lines=["Can I book a cleaning on Tuesday?"],
        checks=[{"kind": "contains", "text": "reference ZZ9"}],
    )
    scenario(
        assistant_a,
        name="never",
        lines=["Can I book a cleaning on Tuesday?"],
        checks=[{"kind": "contains", "text": "Wednesday"}],
    )
    with scopes_disabled():
        versions.version_publish(assistant=assistant_a)

    with pytest.raises(SystemExit) as exited:
        call_command("run_scenarios", assistant=str(assistant_a.id), version="1")
    out = capsys.readouterr().out
    assert exited.value.code == 1
    assert "PASS  booking (v1)" in out and "FAIL  never (v1)" in out
    assert "1 passed, 1 failed" in out

    with scopes_disabled():
        Scenario.objects.filter(name="never").update(active=False)
    call_command("run_scenarios", assistant=str(assistant_a.id), version="published")
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_invalid_tool_arguments_are_refused_as_on_a_call(assistant_a, tools_a, fake_groq):
    made = scenario(
        assistant_a,
        lines=["Can I book a cleaning?"],
        checks=[{"kind": "tool_called", "name": "book_appointment"}],
    )
    fake_groq.queue_tool_calls([{"name": "book_appointment", "arguments": {"service": "x"}}])

    result = run(made)

    [call] = result.transcript[2]["tool_calls"]
    assert call["status"] == "invalid"
    assert "'day' is a required property" in call["result"]
