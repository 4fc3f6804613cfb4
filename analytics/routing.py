"""How the period's answers were split between the assistants' models (model routing): the share
of language-model turns each model answered, and its latency. Read from the turns themselves (no
rollup), as part of the dashboard's cached report."""

from __future__ import annotations

from django.db.models import Count, Q

from analytics.aggregates import Percentile
from analytics.periods import Period
from analytics.tallies import turns_in
from calls.models import Turn


def model_split(*, tenant_ids: list | None, period: Period) -> dict:
    """Per model that answered in `period`: its turns, their share, how many the fast route
    sent it, and first-token and response latency (p50, ms); and the routing reasons' counts."""
    turns = turns_in(tenant_ids, ((period.start, period.end),)).filter(
        role=Turn.Role.ASSISTANT, source=Turn.Source.LLM
    )
    rows = list(
        turns.values("model_used")
        .annotate(
            turns=Count("id"),
            fast=Count("id", filter=Q(route=Turn.Route.FAST)),
            first_token_p50=Percentile("llm_first_token_ms", 0.5),
            response_p50=Percentile("response_sent_ms", 0.5),
        )
        .order_by("-turns", "model_used")
    )
    total = sum(row["turns"] for row in rows)
    reasons = (
        turns.exclude(route_reason="")
        .values("route", "route_reason")
        .annotate(turns=Count("id"))
        .order_by("-turns", "route_reason")
    )
    return {
        "turns": total,
        "models": [
            {
                "model": row["model_used"] or "—",
                "turns": row["turns"],
                "share": row["turns"] / total,
                "fast": row["fast"],
                "first_token_p50": row["first_token_p50"],
                "response_p50": row["response_p50"],
            }
            for row in rows
        ],
        "reasons": [
            {"route": row["route"], "reason": row["route_reason"], "turns": row["turns"]}
            for row in reasons
        ],
    }
