"""/api/v1/call-reports/ and /api/v1/assistants/{id}/analysis-plan/."""

from __future__ import annotations

from django_scopes import scopes_disabled

from insights.models import AnalysisPlan, CallReport
from webhooks.tests.conftest import finished_call

SCHEMA = {"type": "object", "properties": {"reason": {"type": "string"}}}


def _analysed(call, **fields) -> None:
    with scopes_disabled():
        CallReport.objects.filter(call=call).update(analysis_status="done", **fields)


def test_reports_are_filtered_by_success_sentiment_and_extracted_field(api, alice, number_a):
    booked = finished_call(number_a, sid="CA" + "1" * 32)
    lost = finished_call(number_a, sid="CA" + "2" * 32)
    _analysed(booked, success=True, sentiment="positive", data={"reason": "repair"})
    _analysed(lost, success=False, sentiment="negative", data={"reason": "quote"})
    client = api(alice)

    def calls(query: str) -> list[str]:
        answer = client.get(f"/api/v1/call-reports/?{query}")
        assert answer.status_code == 200, answer.json()
        return [r["call"] for r in answer.json()["results"]]

    assert calls("success=true") == [str(booked.id)]
    assert calls("success=false") == [str(lost.id)]
    assert calls("sentiment=negative") == [str(lost.id)]
    assert calls("data=reason:repair") == [str(booked.id)]
    assert calls("data=reason:nothing") == []
    assert sorted(calls("")) == sorted([str(booked.id), str(lost.id)])


def test_a_malformed_field_filter_is_a_400(api, alice, number_a):
    finished_call(number_a)
    for bad in ("reason", "reason__contains:x", ":x", "a b:c"):
        answer = api(alice).get(f"/api/v1/call-reports/?data={bad}")
        assert answer.status_code == 400, bad


def test_a_report_shows_the_cost_of_each_turn(api, alice, number_a):
    call = finished_call(number_a)
    report = api(alice).get(f"/api/v1/call-reports/{call.id}/").json()
    assert report["call"] == str(call.id) and report["currency"] == "USD"
    [turn] = report["turn_costs"]
    assert turn["sequence"] == 2 and turn["llm_cost"] == "0.000748"
    assert report["llm_cost"] == "0.000748"


def test_an_outsider_gets_404_for_our_reports_and_plans(api, charlie, key_b, number_a, assistant_a):
    call = finished_call(number_a)
    for client in (api(charlie), api(key=key_b)):
        assert client.get(f"/api/v1/call-reports/{call.id}/").status_code == 404
        assert client.get("/api/v1/call-reports/").json()["results"] == []
        url = f"/api/v1/assistants/{assistant_a.id}/analysis-plan/"
        assert client.get(url).status_code == 404
        assert client.put(url, {"success_criteria": "x"}, format="json").status_code == 404
    with scopes_disabled():
        assert not AnalysisPlan.objects.exists()


def test_an_owner_sets_the_analysis_plan_and_a_viewer_reads_it(api, alice, bob, assistant_a):
    url = f"/api/v1/assistants/{assistant_a.id}/analysis-plan/"
    assert api(alice).get(url).json()["enabled"] is True  # the defaults before any plan
    plan = {"success_criteria": "The caller booked a visit.", "data_schema": SCHEMA}
    answer = api(alice).put(url, plan, format="json")
    assert answer.status_code == 200, answer.json()
    assert api(bob).get(url).json()["data_schema"] == SCHEMA
    assert api(bob).put(url, plan, format="json").status_code == 403
    with scopes_disabled():
        assert AnalysisPlan.objects.get().success_criteria == "The caller booked a visit."


def test_an_invalid_schema_or_model_is_a_400(api, alice, assistant_a):
    url = f"/api/v1/assistants/{assistant_a.id}/analysis-plan/"
    for plan in (
        {"data_schema": {"type": "object", "properties": {"x": {"type": "nonsense"}}}},
        {"data_schema": {"type": "string"}},
        {"data_schema": [1, 2]},
        {"model": "gpt-99"},
    ):
        answer = api(alice).put(url, plan, format="json")
        assert answer.status_code == 400, plan
    with scopes_disabled():
        assert not AnalysisPlan.objects.exists()
