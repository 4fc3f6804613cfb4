"""The dashboard's outcomes and costs, and a call page's analysis and cost."""

from __future__ import annotations

from decimal import Decimal

from django.test import Client
from django_scopes import scopes_disabled

from analytics.outcomes import outcome_figures
from analytics.periods import period_for
from insights.models import CallReport
from webhooks.tests.conftest import finished_call


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _analysed(call, **fields) -> None:
    with scopes_disabled():
        CallReport.objects.filter(call=call).update(analysis_status="done", **fields)


def test_success_rate_sentiment_and_cost_per_assistant_and_day(number_a, number_b):
    won = finished_call(number_a, sid="CA" + "1" * 32)
    lost = finished_call(number_a, sid="CA" + "2" * 32)
    finished_call(number_a, sid="CA" + "3" * 32)  # not analysed yet
    other = finished_call(number_b, sid="CA" + "4" * 32)
    _analysed(won, success=True, sentiment="positive", total_cost=Decimal("0.5"))
    _analysed(lost, success=False, sentiment="negative", total_cost=Decimal("0.25"))
    _analysed(other, success=True, sentiment="neutral", total_cost=Decimal("9"))

    with scopes_disabled():
        figures = outcome_figures(tenant_ids=[number_a.tenant_id], period=period_for("today"))
    assert figures["success_rate"] == 0.5 and figures["analysed"] == 2
    assert figures["sentiment"] == {"positive": 1, "neutral": 0, "negative": 1}
    # the unanalysed call's own cost: its LLM tokens (0.000748) and 29 characters of Twilio's
    # voice (0.000232)
    third = Decimal("0.000980")
    assert figures["cost"] == Decimal("0.75") + third
    [assistant] = figures["per_assistant"]
    assert assistant["name"] == "Acme front desk" and assistant["calls"] == 3
    [day] = figures["per_day"]
    assert day["calls"] == 3 and day["cost"] == figures["cost"]


def test_the_dashboard_shows_them_for_the_viewers_tenant_only(alice, number_a, number_b):
    won = finished_call(number_a, sid="CA" + "1" * 32)
    other = finished_call(number_b, sid="CA" + "4" * 32)
    _analysed(won, success=True, sentiment="positive")
    _analysed(other, success=False, sentiment="negative")
    page = logged_in(alice).get("/dashboard/").content.decode()
    assert 'id="success-rate">100 %' in page
    assert "positive 1 · neutral 0 · negative 0" in page
    assert "Bravo orders" not in page


def test_a_call_page_shows_its_analysis_and_cost(alice, number_a):
    call = finished_call(number_a)
    _analysed(
        call,
        summary="Booked a plumber for tomorrow.",
        success=True,
        sentiment="positive",
        data={"callback_number": "+15550001111"},
    )
    page = logged_in(alice).get(f"/dashboard/calls/{call.id}/").content.decode()
    assert "Booked a plumber for tomorrow." in page
    assert "+15550001111" in page
    assert "0.000980 USD" in page  # the call's total: LLM tokens and speech
    assert 'class="muted turn-cost">0.000980<' in page  # all of it the assistant turn's


def test_an_outsider_gets_404_for_a_call_page_with_a_report(charlie, number_a):
    call = finished_call(number_a)
    assert logged_in(charlie).get(f"/dashboard/calls/{call.id}/").status_code == 404
