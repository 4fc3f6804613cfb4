"""Reads for the dashboard: figures, charts, per-assistant breakdown, live and finished calls.

Every selector takes `tenant_ids`: the tenants the viewer may see, or None for platform staff
looking at every tenant. The tenant filter is always written out, even inside a tenant scope.
Aggregates use the indexes (tenant, -started_at) on Call and (tenant, created_at) on Turn.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import threading
import time
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Avg, Count, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from analytics.aggregates import Percentile
from assistants.models import AssistantConfig
from calls.models import Call, Turn
from tenants import ratelimits
from tenants.models import RateLimit, Tenant

logger = logging.getLogger(__name__)

PERIODS = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days"}
DEFAULT_PERIOD = "today"
# A call with no final status callback after this long is not shown as live any more.
LIVE_WINDOW = timedelta(seconds=ratelimits.STALE_CALL_SECONDS)
LIVE_CALLS_LIMIT = 50
LIVE_TURNS_PER_CALL = 100
RECENT_CALLS_LIMIT = 20

_FAILED = Q(status__in=[Call.Status.FAILED, Call.Status.BUSY, Call.Status.NO_ANSWER]) | Q(
    outcome__in=[Call.Outcome.FAILED, Call.Outcome.ERROR]
)
_REJECTED = Q(status=Call.Status.REJECTED)
_ASSISTANT = Q(role=Turn.Role.ASSISTANT)


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    start: datetime
    end: datetime
    tz: zoneinfo.ZoneInfo

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def period_for(key: str, *, now: datetime | None = None, tz_name: str = "UTC") -> Period:
    """The period named `key` (today, 7d, 30d; anything else means today) ending now.

    "today" starts at midnight in `tz_name`; 7d and 30d are rolling windows.
    """
    if key not in PERIODS:
        key = DEFAULT_PERIOD
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo("UTC")
    now = now or timezone.now()
    if key == "today":
        start = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = now - timedelta(days=7 if key == "7d" else 30)
    return Period(key=key, label=PERIODS[key], start=start, end=now, tz=tz)


def mask_number(number: str) -> str:
    """A caller's number with all but the last four digits hidden: `••••••0123`."""
    digits = re.sub(r"\D", "", number or "")
    if len(digits) < 7:
        return "••••" if number else ""
    return "••••••" + digits[-4:]


def _for_tenants(qs: QuerySet, tenant_ids: list | None) -> QuerySet:
    return qs if tenant_ids is None else qs.filter(tenant_id__in=tenant_ids)


def _calls(tenant_ids: list | None, period: Period) -> QuerySet:
    qs = Call.objects.filter(started_at__gte=period.start, started_at__lt=period.end)
    return _for_tenants(qs, tenant_ids)


def _turns(tenant_ids: list | None, period: Period) -> QuerySet:
    qs = Turn.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
    return _for_tenants(qs, tenant_ids)


def _ratio(part: int | None, whole: int | None) -> float | None:
    return round(part / whole, 4) if whole and part is not None else None


def _call_aggregates() -> dict[str, Any]:
    handled = ~_REJECTED
    return {
        "calls": Count("id"),
        "rejected": Count("id", filter=_REJECTED),
        "failed": Count("id", filter=_FAILED & handled),
        "answered": Count("id", filter=Q(answered_at__isnull=False) & handled & ~_FAILED),
        "total_duration": Sum("duration_seconds", filter=handled),
        "avg_duration": Avg("duration_seconds", filter=handled),
    }


def _turn_aggregates() -> dict[str, Any]:
    return {
        "turns": Count("id"),
        "assistant_turns": Count("id", filter=_ASSISTANT),
        "fallback_turns": Count("id", filter=_ASSISTANT & ~Q(fallbacks=[])),
        "error_turns": Count("id", filter=_ASSISTANT & ~Q(error="")),
        "cache_hits": Count("id", filter=_ASSISTANT & Q(cache_hit=True)),
        "tokens_in": Sum("tokens_in"),
        "tokens_out": Sum("tokens_out"),
        "first_token_p50": Percentile("llm_first_token_ms", 0.5, filter=_ASSISTANT),
        "first_token_p90": Percentile("llm_first_token_ms", 0.9, filter=_ASSISTANT),
        "turn_p50": Percentile("response_sent_ms", 0.5, filter=_ASSISTANT),
        "turn_p90": Percentile("response_sent_ms", 0.9, filter=_ASSISTANT),
    }


def _derived(calls: dict, turns: dict) -> dict[str, Any]:
    handled_calls = (calls.get("calls") or 0) - (calls.get("rejected") or 0)
    tokens = (turns.get("tokens_in") or 0) + (turns.get("tokens_out") or 0)
    avg = calls.get("avg_duration")
    assistant_turns = turns.get("assistant_turns") or 0
    return {
        "calls": calls.get("calls") or 0,
        "answered": calls.get("answered") or 0,
        "rejected": calls.get("rejected") or 0,
        "failed": calls.get("failed") or 0,
        "total_duration": calls.get("total_duration") or 0,
        "avg_duration": round(avg, 1) if avg is not None else None,
        "turns": turns.get("turns") or 0,
        "turns_per_call": (
            round((turns.get("turns") or 0) / handled_calls, 2) if handled_calls else None
        ),
        "first_token_p50": turns.get("first_token_p50"),
        "first_token_p90": turns.get("first_token_p90"),
        "turn_p50": turns.get("turn_p50"),
        "turn_p90": turns.get("turn_p90"),
        "fallback_rate": _ratio(turns.get("fallback_turns"), assistant_turns),
        "error_rate": _ratio(turns.get("error_turns"), assistant_turns),
        "cache_hit_rate": _ratio(turns.get("cache_hits"), assistant_turns),
        "tokens": tokens,
    }


def token_budget(*, tenant: Tenant, period: Period) -> int | None:
    """The tenant's LLM token allowance over `period` (its per-window limit times the windows
    the period spans), or None when it has no token limit."""
    limit = ratelimits.effective_limits(tenant).get(RateLimit.Kind.LLM_TOKENS_PER_DAY)
    if limit is None:
        return None
    windows = max(math.ceil(period.seconds / limit.window_seconds), 1)
    return limit.limit * windows


def figures(
    *, tenant_ids: list | None, period: Period, budget_tenant: Tenant | None = None
) -> dict:
    """The period's figures: calls by result, durations, turns per call, latency percentiles
    (ms), fallback/error/cache-hit rates over assistant turns, LLM tokens (and the budget of
    `budget_tenant` when one tenant is in view)."""
    calls = _calls(tenant_ids, period).aggregate(**_call_aggregates())
    turns = _turns(tenant_ids, period).aggregate(**_turn_aggregates())
    result = _derived(calls, turns)
    budget = token_budget(tenant=budget_tenant, period=period) if budget_tenant else None
    result["token_budget"] = budget
    result["token_budget_used"] = _ratio(result["tokens"], budget)
    return result


def _hours(period: Period) -> list[datetime]:
    first = period.start.astimezone(period.tz).replace(minute=0, second=0, microsecond=0)
    hours, at = [], first
    while at < period.end:
        hours.append(at)
        at = (at + timedelta(hours=1)).astimezone(period.tz)
    return hours


def charts(*, tenant_ids: list | None, period: Period) -> dict:
    """Hourly series for the period: calls per hour, and p50/p90 of the LLM's first token and
    of the whole turn (ms) per hour. Hours without data are 0 calls / no latency (None)."""
    hour = TruncHour("started_at", tzinfo=period.tz)
    call_rows = (
        _calls(tenant_ids, period).annotate(hour=hour).values("hour").annotate(n=Count("id"))
    )
    calls_by_hour = {row["hour"]: row["n"] for row in call_rows.order_by()}
    latency_rows = (
        _turns(tenant_ids, period)
        .filter(_ASSISTANT)
        .annotate(hour=TruncHour("created_at", tzinfo=period.tz))
        .values("hour")
        .annotate(
            first_token_p50=Percentile("llm_first_token_ms", 0.5),
            turn_p50=Percentile("response_sent_ms", 0.5),
            turn_p90=Percentile("response_sent_ms", 0.9),
        )
    )
    latency_by_hour = {row["hour"]: row for row in latency_rows.order_by()}
    labels, calls, first_token_p50, turn_p50, turn_p90 = [], [], [], [], []
    for at in _hours(period):
        labels.append(at.strftime("%d %b %H:00") if period.key != "today" else at.strftime("%H:00"))
        calls.append(calls_by_hour.get(at, 0))
        row = latency_by_hour.get(at, {})
        first_token_p50.append(row.get("first_token_p50"))
        turn_p50.append(row.get("turn_p50"))
        turn_p90.append(row.get("turn_p90"))
    return {
        "labels": labels,
        "calls": calls,
        "first_token_p50": first_token_p50,
        "turn_p50": turn_p50,
        "turn_p90": turn_p90,
    }


def assistant_breakdown(*, tenant_ids: list | None, period: Period) -> list[dict]:
    """The period's figures per assistant config, busiest first, to compare configs."""
    call_rows = (
        _calls(tenant_ids, period)
        .filter(assistant__isnull=False)
        .values("assistant_id")
        .annotate(**_call_aggregates())
        .order_by()
    )
    turn_rows = (
        _turns(tenant_ids, period)
        .filter(call__assistant__isnull=False)
        .values("call__assistant_id")
        .annotate(**_turn_aggregates())
        .order_by()
    )
    by_assistant: dict[Any, tuple[dict, dict]] = {}
    for row in call_rows:
        by_assistant[row["assistant_id"]] = (row, {})
    for row in turn_rows:
        calls, _ = by_assistant.get(row["call__assistant_id"], ({}, {}))
        by_assistant[row["call__assistant_id"]] = (calls, row)
    assistants = _for_tenants(AssistantConfig.objects.filter(id__in=list(by_assistant)), tenant_ids)
    names = {
        a.id: (a.name, a.model, a.mode, a.tenant.name) for a in assistants.select_related("tenant")
    }
    result = []
    for assistant_id, (calls, turns) in by_assistant.items():
        if assistant_id not in names:
            continue
        name, model, mode, tenant_name = names[assistant_id]
        result.append(
            {
                "id": str(assistant_id),
                "name": name,
                "model": model,
                "mode": mode,
                "tenant": tenant_name,
                **_derived(calls, turns),
            }  # fmt: skip
        )
    result.sort(key=lambda row: (-row["calls"], row["name"]))
    return result


def _with_turns(qs: QuerySet) -> QuerySet:
    return qs.select_related("assistant", "tenant", "phone_number").prefetch_related(
        Prefetch("turns", queryset=Turn.objects.order_by("sequence"))
    )


def live_calls(*, tenant_ids: list | None, now: datetime | None = None) -> list[Call]:
    """Calls in progress (started within the last few hours), oldest first, with their turns."""
    now = now or timezone.now()
    qs = _for_tenants(
        Call.objects.filter(status__in=Call.ACTIVE_STATUSES, started_at__gte=now - LIVE_WINDOW),
        tenant_ids,
    )
    calls = list(_with_turns(qs.order_by("started_at")[:LIVE_CALLS_LIMIT]))
    for call in calls:
        call.recent_turns = list(call.turns.all())[-LIVE_TURNS_PER_CALL:]
    return calls


def recent_calls(*, tenant_ids: list | None, limit: int = RECENT_CALLS_LIMIT) -> list[Call]:
    """The calls that ended most recently (rejected ones included)."""
    qs = _for_tenants(Call.objects.exclude(status__in=Call.ACTIVE_STATUSES), tenant_ids)
    return list(qs.select_related("assistant", "tenant").order_by("-started_at")[:limit])


def call_turns(*, call: Call) -> list[Turn]:
    return list(Turn.objects.filter(call=call, tenant_id=call.tenant_id).order_by("sequence"))


WATERFALL_STAGES = (
    ("llm_first_token_ms", "LLM first token"),
    ("llm_done_ms", "LLM done"),
    ("first_audio_ms", "First audio ready"),
    ("response_sent_ms", "Response sent"),
    ("last_token_sent_ms", "Last token sent"),
)


def turn_waterfall(turn: Turn) -> list[dict]:
    """The stages of an assistant turn as (start, end) spans in ms from the caller's speech end:
    each stage starts where the previous recorded one ended."""
    spans, previous = [], 0
    for field, label in WATERFALL_STAGES:
        value = getattr(turn, field)
        if value is None:
            continue
        spans.append({"stage": label, "start": previous, "end": value})
        previous = max(previous, value)
    return spans


@contextlib.contextmanager
def heavy_reads() -> Iterator[None]:
    """On PostgreSQL, give the aggregate queries memory to sort in (percentiles) and skip JIT
    compilation (it costs more than it saves on these queries), for this transaction only."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('work_mem', %s, true)", [settings.ANALYTICS_WORK_MEM])
            cursor.execute("SELECT set_config('jit', 'off', true)")
        yield


def report(*, tenant_ids: list | None, period: Period, budget_tenant: Tenant | None = None) -> dict:
    """Everything the dashboard shows for a period: figures, charts and per-assistant rows."""
    with heavy_reads():
        return {
            "period": {"key": period.key, "label": period.label, "start": period.start.isoformat()},
            "figures": figures(tenant_ids=tenant_ids, period=period, budget_tenant=budget_tenant),
            "charts": charts(tenant_ids=tenant_ids, period=period),
            "assistants": assistant_breakdown(tenant_ids=tenant_ids, period=period),
        }


def _report_key(tenant_ids: list | None, period: Period, budget_tenant: Tenant | None) -> str:
    who = "all" if tenant_ids is None else ",".join(sorted(str(t) for t in tenant_ids))
    budget = str(budget_tenant.id) if budget_tenant else "-"
    digest = hashlib.sha256(f"{who}|{budget}|{period.key}|{period.tz}".encode()).hexdigest()
    return f"analytics:report:{digest[:32]}"


def _compute_and_store(key: str, **kwargs: Any) -> dict:
    result = report(**kwargs)
    cache.set(key, {"at": time.time(), "report": result}, settings.ANALYTICS_STALE_SECONDS)
    return result


def _refresh_in_background(key: str, **kwargs: Any) -> None:
    """Recompute a stale report in a thread of this process (once at a time per report)."""
    if not cache.add(f"{key}:lock", 1, 300):
        return
    tenant_ids = kwargs["tenant_ids"]

    def run() -> None:
        try:
            # A new entry point: enter the scope of the tenants the report is about.
            with scopes_disabled() if tenant_ids is None else scope(tenant=list(tenant_ids)):
                _compute_and_store(key, **kwargs)
        except Exception:
            logger.exception("could not refresh dashboard figures")
        finally:
            cache.delete(f"{key}:lock")
            connection.close()

    threading.Thread(target=run, name="analytics-refresh", daemon=True).start()


def cached_report(
    *, tenant_ids: list | None, period: Period, budget_tenant: Tenant | None = None
) -> dict:
    """`report()` through the cache, per tenant set and period.

    A report younger than ANALYTICS_CACHE_SECONDS is served as is; an older one (kept up to
    ANALYTICS_STALE_SECONDS) is served at once while a background thread recomputes it, so
    that the many viewers and the refresh after each live event cost one computation and no
    viewer waits for the aggregates over a large history more than once.
    """
    kwargs = {"tenant_ids": tenant_ids, "period": period, "budget_tenant": budget_tenant}
    if settings.ANALYTICS_CACHE_SECONDS <= 0:
        return report(**kwargs)
    key = _report_key(tenant_ids, period, budget_tenant)
    entry = cache.get(key)
    if entry is None:
        return _compute_and_store(key, **kwargs)
    if time.time() - entry["at"] > settings.ANALYTICS_CACHE_SECONDS:
        _refresh_in_background(key, **kwargs)
    return entry["report"]
