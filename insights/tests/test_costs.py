"""What a call cost, per turn and in all, from the price table."""

from __future__ import annotations

from decimal import Decimal

from django_scopes import scope, scopes_disabled

from calls import services as call_services
from calls.models import Call, Turn
from insights.costs import call_report_prepare
from insights.models import CallReport, TurnCost
from webhooks.tests.conftest import finished_call


def test_a_call_costs_its_tokens_minutes_and_speech(number_a, settings):
    settings.PRICES = {
        "llm_per_million_tokens": {"llama-3.3-70b-versatile": {"input": 1, "output": 2}},
        "telephony_per_minute": {"relay": 0.1},
        "speech_per_million_characters": {"say": 1000},
    }
    call = finished_call(number_a)
    with scopes_disabled():
        report = CallReport.objects.get(call=call)
        [turn_cost] = TurnCost.objects.filter(report=report)

    # 1000 tokens in at $1/M and 200 out at $2/M; 29 characters of Twilio's voice at $1000/M;
    # a gather call, which the table gives no price: free.
    assert turn_cost.llm_cost == Decimal("0.0014")
    assert turn_cost.speech_characters == len("We can come tomorrow at nine.")
    assert turn_cost.speech_cost == Decimal("0.029")
    assert report.telephony_cost == 0
    assert report.total_cost == Decimal("0.0304")
    assert (report.tokens_in, report.tokens_out) == (1000, 200)


def test_minutes_are_billed_per_started_minute_by_mode(number_a, settings):
    settings.PRICES = {**settings.PRICES, "telephony_per_minute": {"gather": 0.01}}
    with scope(tenant=number_a.tenant_id):
        call, _ = call_services.call_start(
            phone_number=number_a, call_sid="CA" + "2" * 32, from_number="+1555", to_number="+1"
        )
        call_services.call_status_update(
            call=call, status=Call.Status.COMPLETED, sequence=3, duration=121
        )
        report = CallReport.objects.get(call=call)
    assert report.billed_minutes == 3
    assert report.telephony_cost == Decimal("0.03")


def test_the_report_is_written_once(number_a):
    call = finished_call(number_a)
    with scope(tenant=number_a.tenant_id):
        Turn.objects.filter(call=call).update(tokens_in=10**6)
        again = call_report_prepare(call=call)
    assert again.tokens_in == 1000


def test_an_interrupted_answer_costs_the_speech_that_was_heard(number_a, settings):
    settings.PRICES = {**settings.PRICES, "speech_per_million_characters": {"say": 10**6}}
    with scope(tenant=number_a.tenant_id):
        call, _ = call_services.call_start(
            phone_number=number_a, call_sid="CA" + "4" * 32, from_number="+1555", to_number="+1"
        )
        turn = call_services.turn_add(call=call, role=Turn.Role.ASSISTANT, text="a" * 100)
        call_services.turn_mark_interrupted(turn=turn, heard_text="a" * 10)
        call_services.call_finish(call=call)
        report = CallReport.objects.get(call=call)
    assert report.speech_characters == 10 and report.speech_cost == Decimal(10)
