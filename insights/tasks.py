"""Celery entry points for call insights. Thin: they call services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from insights.analysis import call_analysis_fail, call_analyze
from insights.models import CallReport
from providers.llm import LLMError

RETRIES = 3


# Sent as every call ends; its outcome is the report's analysis status, so no result is kept
# (nor waited for: sending it costs no subscription to a result channel).
@shared_task(
    bind=True, max_retries=RETRIES, soft_time_limit=120, time_limit=150, ignore_result=True
)
def analyze_call(self, report_id: str, tenant_id: str) -> str:
    """Analyse one ended call; provider trouble is retried with a growing delay, then the
    analysis is stored as failed."""
    with scope(tenant=tenant_id):
        report = (
            CallReport.objects.select_related("call")
            .filter(id=report_id, tenant_id=tenant_id, analysis_status=CallReport.Analysis.PENDING)
            .first()
        )
        if report is None:  # analysed already (a repeated task), or gone
            return "nothing to do"
        try:
            return call_analyze(report=report).analysis_status
        except LLMError as exc:
            if self.request.retries >= RETRIES or exc.permanent:
                return call_analysis_fail(report=report, error=f"LLM: {exc}").analysis_status
            raise self.retry(countdown=30 * 4**self.request.retries) from exc


@shared_task
def requeue_pending_analyses() -> int:
    """Queue again the analyses whose task was lost (a worker stopped, the broker restarted):
    reports still pending half an hour after the call ended (past the task's own retries), up
    to a day old."""
    now = timezone.now()
    with scopes_disabled():  # a housekeeping pass over every tenant
        pending = list(
            CallReport.objects.filter(
                analysis_status=CallReport.Analysis.PENDING,
                created_at__lt=now - timedelta(minutes=30),
                created_at__gt=now - timedelta(days=1),
            ).values_list("id", "tenant_id")[:1000]
        )
        for report_id, tenant_id in pending:
            analyze_call.delay(str(report_id), str(tenant_id))
    return len(pending)
