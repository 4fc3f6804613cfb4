"""What the period's calls achieved and cost: success rate and sentiment from their analyses,
cost in all, per assistant and per day (read from the call reports, one row per call)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from analytics.periods import Period
from analytics.tallies import for_tenants
from insights.models import CallReport, Sentiment


def outcome_figures(*, tenant_ids: list | None, period: Period) -> dict:
    """Success rate and sentiment of the analysed calls that started in `period`, and cost (in
    the platform's currency) in all, per assistant and per day of the period's time zone."""
    reports = for_tenants(
        CallReport.objects.filter(
            call__started_at__gte=period.start, call__started_at__lt=period.end
        ),
        tenant_ids,
    ).order_by()
    totals = reports.aggregate(
        cost=Sum("total_cost"),
        judged=Count("id", filter=Q(success__isnull=False)),
        succeeded=Count("id", filter=Q(success=True)),
        **{sentiment: Count("id", filter=Q(sentiment=sentiment)) for sentiment in Sentiment.values},
    )
    per_assistant = (
        reports.values("call__assistant__name")
        .annotate(
            calls=Count("id"),
            cost=Sum("total_cost"),
            judged=Count("id", filter=Q(success__isnull=False)),
            succeeded=Count("id", filter=Q(success=True)),
        )
        .order_by("call__assistant__name")
    )
    per_day = (
        reports.annotate(day=TruncDate("call__started_at", tzinfo=period.tz))
        .values("day")
        .annotate(calls=Count("id"), cost=Sum("total_cost"))
        .order_by("day")
    )
    return {
        "cost": totals["cost"] or Decimal(0),
        "success_rate": _rate(totals["succeeded"], totals["judged"]),
        "analysed": totals["judged"],
        "sentiment": {sentiment: totals[sentiment] for sentiment in Sentiment.values},
        "per_assistant": [
            {
                "name": row["call__assistant__name"] or "—",
                "calls": row["calls"],
                "cost": row["cost"] or Decimal(0),
                "success_rate": _rate(row["succeeded"], row["judged"]),
            }
            for row in per_assistant
        ],
        "per_day": [
            {"day": row["day"], "calls": row["calls"], "cost": row["cost"] or Decimal(0)}
            for row in per_day
        ],
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None
