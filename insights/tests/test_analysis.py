"""Post-call analysis against the fake Groq server (real SDK, real HTTP)."""

from __future__ import annotations

import json

import pytest
from django_scopes import scope, scopes_disabled

from insights.analysis import call_analyze
from insights.models import AnalysisPlan, CallReport
from insights.tasks import analyze_call
from webhooks.models import Event
from webhooks.tests.conftest import finished_call, subscribe

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "callback_number": {"type": "string"},
        "appointment_time": {"type": "string", "format": "date-time"},
        "reason": {"type": "string", "enum": ["repair", "quote", "other"]},
    },
    "required": ["reason"],
}

VALID = {
    "summary": "The caller booked a plumber for tomorrow at nine.",
    "success": True,
    "success_reason": "An appointment was booked.",
    "sentiment": "positive",
    "data": {"name": "Dana", "reason": "repair"},
}


@pytest.fixture
def plan(assistant_a):
    with scopes_disabled():
        return AnalysisPlan.objects.create(
            tenant=assistant_a.tenant,
            assistant=assistant_a,
            success_criteria="The caller booked an appointment.",
            data_schema=SCHEMA,
        )


def report_of(call) -> CallReport:
    with scopes_disabled():
        return CallReport.objects.select_related("call").get(call=call)


def analyze(call) -> CallReport:
    report = report_of(call)
    with scope(tenant=call.tenant_id):
        analyze_call.apply(args=(str(report.id), str(call.tenant_id)))
    return report_of(call)


def test_a_finished_call_is_analysed_with_structured_output(number_a, plan, fake_groq):
    call = finished_call(number_a)
    report = analyze(call)

    assert report.analysis_status == CallReport.Analysis.DONE
    assert report.summary.startswith("The caller talked about")
    assert report.success is True and report.sentiment == "positive"
    assert report.data["reason"] == "repair"  # valid against the tenant's schema
    assert report.analysis_model == "openai/gpt-oss-20b"
    assert report.analysis_cost > 0 and report.total_cost > report.llm_cost

    [request] = fake_groq.requests
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"]["properties"]["data"] == SCHEMA
    prompt = request.messages[1]["content"]
    assert "The caller booked an appointment." in prompt
    assert "Caller: I need a plumber tomorrow" in prompt


def test_the_analysis_goes_out_as_call_analyzed(number_a, plan, fake_groq, receiver, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    subscribe(number_a.tenant, receiver.url, ["call.analyzed"])
    fake_groq.queue_answer(json.dumps(VALID))
    call = finished_call(number_a)
    analyze(call)
    with scopes_disabled():
        event = Event.objects.get(type="call.analyzed")
    assert event.payload["analysis"]["data"] == {"name": "Dana", "reason": "repair"}
    assert event.payload["analysis"]["status"] == "done"
    assert event.payload["call"]["id"] == str(call.id)


def test_invalid_json_is_asked_again_once_then_stored_as_failed(number_a, plan, fake_groq):
    fake_groq.queue_answer("Sure! Here is the analysis: {summary: ...", count=2)
    call = finished_call(number_a)
    report = analyze(call)

    assert report.analysis_status == CallReport.Analysis.FAILED
    assert report.analysis_attempts == 2 and len(fake_groq.requests) == 2
    assert "not JSON" in report.analysis_error
    assert report.summary == "" and report.data == {}
    with scopes_disabled():
        assert Event.objects.filter(type="call.analyzed").count() == 0  # nobody subscribed


def test_an_answer_that_breaks_the_schema_is_asked_again(number_a, plan, fake_groq):
    wrong = {**VALID, "data": {"name": "Dana", "reason": "because"}}  # not in the enum
    fake_groq.queue_answer(json.dumps(wrong))
    fake_groq.queue_answer(json.dumps(VALID))
    report = analyze(finished_call(number_a))
    assert report.analysis_status == CallReport.Analysis.DONE
    assert report.analysis_attempts == 2
    assert report.data == VALID["data"]


def test_a_schema_break_twice_is_stored_as_failed_with_where(number_a, plan, fake_groq):
    fake_groq.queue_answer(json.dumps({**VALID, "sentiment": "ecstatic"}), count=2)
    report = analyze(finished_call(number_a))
    assert report.analysis_status == CallReport.Analysis.FAILED
    assert "invalid at sentiment" in report.analysis_error


def test_a_failing_provider_is_retried_by_the_task_then_stored_as_failed(
    number_a, plan, fake_groq, settings
):
    settings.LLM_BACKOFF_SECONDS = 0.001
    fake_groq.queue_fault("503", count=100)
    report = analyze(finished_call(number_a))
    assert report.analysis_status == CallReport.Analysis.FAILED
    assert "HTTP 503" in report.analysis_error
    # every attempt of the first run and of each of the task's three retries
    assert len(fake_groq.requests) == 4 * settings.LLM_MAX_ATTEMPTS


def test_a_provider_that_recovers_gets_the_analysis_done(number_a, plan, fake_groq, settings):
    settings.LLM_BACKOFF_SECONDS = 0.001
    fake_groq.queue_fault("500", count=2)
    report = analyze(finished_call(number_a))
    assert report.analysis_status == CallReport.Analysis.DONE


def test_a_call_where_the_caller_said_nothing_is_not_analysed(number_a, fake_groq):
    from calls import services as call_services

    with scope(tenant=number_a.tenant_id):
        call, _ = call_services.call_start(
            phone_number=number_a, call_sid="CA" + "3" * 32, from_number="+1555", to_number="+1"
        )
        call_services.call_finish(call=call)
    report = analyze(call)
    assert report.analysis_status == CallReport.Analysis.SKIPPED
    assert fake_groq.requests == []


def test_an_assistant_can_switch_analysis_off(number_a, plan, fake_groq):
    with scopes_disabled():
        AnalysisPlan.objects.filter(id=plan.id).update(enabled=False)
    report = analyze(finished_call(number_a))
    assert report.analysis_status == CallReport.Analysis.SKIPPED
    assert fake_groq.requests == []


def test_without_a_plan_the_defaults_work(number_a, fake_groq):
    report = analyze(finished_call(number_a))
    assert report.analysis_status == CallReport.Analysis.DONE
    assert report.data == {}


def test_a_rejected_call_has_no_report(number_a, db):
    from calls import services as call_services

    with scopes_disabled():
        call = call_services.call_reject(
            tenant=number_a.tenant,
            phone_number=number_a,
            call_sid="CA" + "6" * 32,
            from_number="+1555",
            to_number=number_a.number,
            outcome="rejected_rate_limit",
        )
        assert not CallReport.objects.filter(call=call).exists()


def test_the_task_does_nothing_for_a_report_already_analysed(number_a, plan, fake_groq):
    call = finished_call(number_a)
    analyze(call)
    report = analyze(call)
    assert report.analysis_status == CallReport.Analysis.DONE
    assert len(fake_groq.requests) == 1


def test_the_analysis_runs_only_in_its_tenants_scope(number_a, tenant_b, plan, fake_groq):
    call = finished_call(number_a)
    report = report_of(call)
    with scope(tenant=tenant_b.id):
        result = analyze_call.apply(args=(str(report.id), str(tenant_b.id))).get()
    assert result == "nothing to do"
    assert report_of(call).analysis_status == CallReport.Analysis.PENDING


def test_call_analyze_never_raises_on_garbage(number_a, plan, fake_groq):
    fake_groq.queue_answer("[1, 2, 3]", count=2)
    with scope(tenant=number_a.tenant_id):
        report = call_analyze(report=report_of(finished_call(number_a)))
    assert report.analysis_status == CallReport.Analysis.FAILED


@pytest.mark.django_db(transaction=True)
def test_an_analysis_whose_task_was_lost_is_queued_again_for_a_worker(
    number_a, celery_worker_process
):
    import time
    from datetime import timedelta

    from django.utils import timezone

    from insights.tasks import requeue_pending_analyses

    call = finished_call(number_a)
    deadline = time.monotonic() + 30
    while report_of(call).analysis_status == CallReport.Analysis.PENDING:  # its first task
        assert time.monotonic() < deadline, celery_worker_process.log()
        time.sleep(0.1)
    with scopes_disabled():  # as if that task had been lost, an hour ago
        CallReport.objects.filter(call=call).update(
            analysis_status=CallReport.Analysis.PENDING,
            created_at=timezone.now() - timedelta(hours=1),
        )
    assert requeue_pending_analyses() == 1
    deadline = time.monotonic() + 30
    while report_of(call).analysis_status == CallReport.Analysis.PENDING:
        assert time.monotonic() < deadline, celery_worker_process.log()
        time.sleep(0.1)
    assert report_of(call).analysis_status in (
        CallReport.Analysis.DONE,
        CallReport.Analysis.FAILED,
    )
