"""Reads of calls and turns."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet, Sum
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call, Turn
from tenants.models import RateLimit, Tenant
from tenants.ratelimits import effective_limits


def unscoped_call_by_sid(call_sid: str) -> Call | None:
    """The Call with Twilio's CallSid, across tenants, or None.

    A named bypass of tenant scoping for webhook entry points: the call tells us the tenant,
    whose scope the caller then enters.
    """
    if not call_sid or len(call_sid) > 64:
        return None
    with scopes_disabled():
        try:
            return Call.objects.select_related("tenant").get(call_sid=call_sid)
        except Call.DoesNotExist:
            return None


def unscoped_call_by_id(call_id: uuid.UUID) -> Call | None:
    """The Call with this id, across tenants, or None.

    A named bypass of tenant scoping for the relay handshake: the call tells us the tenant
    whose token signs it.
    """
    with scopes_disabled():
        try:
            return Call.objects.select_related("tenant").get(id=call_id)
        except Call.DoesNotExist:
            return None


# --- Figures for a period (shared by the REST API and the dashboard) --------------------------

REJECTED_OUTCOMES = (
    Call.Outcome.REJECTED_UNKNOWN_NUMBER,
    Call.Outcome.REJECTED_INACTIVE,
    Call.Outcome.REJECTED_RATE_LIMIT,
)
FAILED_STATUSES = (Call.Status.FAILED,)
FAILED_OUTCOMES = (Call.Outcome.FAILED, Call.Outcome.ERROR)


def calls_in_period(*, tenant: Tenant, start: datetime, end: datetime) -> QuerySet[Call]:
    """The tenant's calls that started in [start, end)."""
    return Call.objects.filter(tenant=tenant, started_at__gte=start, started_at__lt=end)


def percentile(values: list[int], fraction: float) -> float | None:
    """The `fraction` percentile of `values` (linear interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def call_figures(calls: QuerySet[Call]) -> dict[str, Any]:
    """Counts, durations, turns, latency percentiles, fallback/error/cache rates and tokens
    of `calls` (any queryset of calls, already narrowed to one tenant and period)."""
    totals = calls.aggregate(
        calls=Count("id"),
        answered=Count("id", filter=Q(answered_at__isnull=False)),
        rejected=Count(
            "id", filter=Q(status=Call.Status.REJECTED) | Q(outcome__in=REJECTED_OUTCOMES)
        ),
        failed=Count("id", filter=Q(status__in=FAILED_STATUSES) | Q(outcome__in=FAILED_OUTCOMES)),
        total_duration_seconds=Sum("duration_seconds"),
        avg_duration_seconds=Avg("duration_seconds"),
    )
    # One pass over the period's turns (a separate COUNT may get a poor plan on fresh tables).
    all_turns = list(
        Turn.objects.filter(call__in=calls.values("id")).values_list(
            "role", "llm_first_token_ms", "response_sent_ms", "fallbacks", "error", "cache_hit",
            "tokens_in", "tokens_out",
        )
    )  # fmt: skip
    turn_count = len(all_turns)
    rows = [r[1:] for r in all_turns if r[0] == Turn.Role.ASSISTANT]
    first_token = [r[0] for r in rows if r[0] is not None]
    sent = [r[1] for r in rows if r[1] is not None]
    replies = len(rows)
    avg_duration = totals["avg_duration_seconds"]
    return {
        "calls": totals["calls"],
        "answered": totals["answered"],
        "rejected": totals["rejected"],
        "failed": totals["failed"],
        "total_duration_seconds": totals["total_duration_seconds"] or 0,
        "avg_duration_seconds": round(avg_duration, 1) if avg_duration is not None else None,
        "turns": turn_count,
        "turns_per_call": round(turn_count / totals["calls"], 2) if totals["calls"] else None,
        "assistant_replies": replies,
        "llm_first_token_ms_p50": percentile(first_token, 0.5),
        "llm_first_token_ms_p90": percentile(first_token, 0.9),
        "response_sent_ms_p50": percentile(sent, 0.5),
        "response_sent_ms_p90": percentile(sent, 0.9),
        "fallback_rate": _ratio(sum(1 for r in rows if r[2]), replies),
        "error_rate": _ratio(sum(1 for r in rows if r[3]), replies),
        "cache_hit_rate": _ratio(sum(1 for r in rows if r[4]), replies),
        "tokens_used": sum((r[5] or 0) + (r[6] or 0) for r in rows),
    }


def token_budget(*, tenant: Tenant, start: datetime, end: datetime) -> int | None:
    """The LLM tokens the tenant may use in [start, end) under its daily limit, None if none."""
    limit = effective_limits(tenant).get(RateLimit.Kind.LLM_TOKENS_PER_DAY)
    if limit is None:
        return None
    windows = math.ceil((end - start).total_seconds() / max(limit.window_seconds, 1))
    return limit.limit * max(windows, 1)


def tenant_figures(
    *, tenant: Tenant, start: datetime, end: datetime, assistant_id: object = None
) -> dict[str, Any]:
    """The dashboard's figures for [start, end): the tenant's totals and one row per assistant
    (only `assistant_id`'s row when given)."""
    calls = calls_in_period(tenant=tenant, start=start, end=end)
    assistants = AssistantConfig.objects.filter(tenant=tenant).order_by("name")
    if assistant_id is not None:
        assistants = assistants.filter(id=assistant_id)
    totals = call_figures(calls)
    budget = token_budget(tenant=tenant, start=start, end=end)
    totals["token_budget"] = budget
    totals["token_budget_used"] = _ratio(totals["tokens_used"], budget or 0)
    return {
        "start": start,
        "end": end,
        "tenant": totals,
        "assistants": [
            {"assistant": a.id, "name": a.name, **call_figures(calls.filter(assistant=a))}
            for a in assistants
        ],
    }
