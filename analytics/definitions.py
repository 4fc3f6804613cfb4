"""What the dashboard counts, shared by the figures (selectors) and the hourly rollups (services).

The names are the fields of the rollups (analytics.models.Stats) the counts are stored in.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, Sum

from calls.models import Call, Turn

FAILED = Q(status__in=[Call.Status.FAILED, Call.Status.BUSY, Call.Status.NO_ANSWER]) | Q(
    outcome__in=[Call.Outcome.FAILED, Call.Outcome.ERROR]
)
REJECTED = Q(status=Call.Status.REJECTED)
ASSISTANT = Q(role=Turn.Role.ASSISTANT)

CALL_COUNT_FIELDS = (
    "calls",
    "answered",
    "rejected",
    "failed",
    "duration_total",
    "duration_count",
)
TURN_COUNT_FIELDS = (
    "turns",
    "assistant_turns",
    "fallback_turns",
    "error_turns",
    "cache_hits",
    "tokens_in",
    "tokens_out",
)
COUNT_FIELDS = CALL_COUNT_FIELDS + TURN_COUNT_FIELDS
# The latencies whose percentiles are shown, as (Turn field, histogram field of the rollups).
LATENCIES = (("llm_first_token_ms", "first_token_ms"), ("response_sent_ms", "turn_ms"))
HISTOGRAM_FIELDS = tuple(column for _, column in LATENCIES)


def call_counts() -> dict[str, Any]:
    """Aggregates over calls: rejected calls count only as such; durations (sum and number of
    known ones) are of the calls that were not rejected."""
    handled = ~REJECTED
    return {
        "calls": Count("id"),
        "rejected": Count("id", filter=REJECTED),
        "failed": Count("id", filter=FAILED & handled),
        "answered": Count("id", filter=Q(answered_at__isnull=False) & handled & ~FAILED),
        "duration_total": Sum("duration_seconds", filter=handled),
        "duration_count": Count("duration_seconds", filter=handled),
    }


def turn_counts() -> dict[str, Any]:
    """Aggregates over turns: rates are over assistant turns; tokens over all turns."""
    return {
        "turns": Count("id"),
        "assistant_turns": Count("id", filter=ASSISTANT),
        "fallback_turns": Count("id", filter=ASSISTANT & ~Q(fallbacks=[])),
        "error_turns": Count("id", filter=ASSISTANT & ~Q(error="")),
        "cache_hits": Count("id", filter=ASSISTANT & Q(cache_hit=True)),
        "tokens_in": Sum("tokens_in"),
        "tokens_out": Sum("tokens_out"),
    }
