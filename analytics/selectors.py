"""Reads for the dashboard: figures, charts, per-assistant breakdown, live and finished calls.

Every selector takes `tenant_ids`: the tenants the viewer may see, or None for platform staff
looking at every tenant. The tenant filter is always written out, even inside a tenant scope.

A period's figures add up two parts (analytics.tallies): the whole hours covered by the rollups
(analytics.models: hourly rows, daily rows for whole days, all-tenant hourly rows for the charts
of staff; a beat task keeps them up to date) and the rest -- partial hours at the edges, the
current hour, anything not rolled up yet -- aggregated from the calls and turns (indexes
(tenant, -started_at) on Call and (tenant, created_at) on Turn). With no rollup part the
figures are exact; with one, latency percentiles come from merged histograms.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Prefetch, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from analytics import histograms
from analytics.aggregates import Percentile
from analytics.definitions import ASSISTANT, HISTOGRAM_FIELDS
from analytics.models import HourlyStats, PlatformHourlyStats
from analytics.periods import Period
from analytics.routing import model_split
from analytics.services import floor_hour
from analytics.tallies import (
    Split,
    Tally,
    calls_in,
    for_tenants,
    group_tallies,
    resolve_split,
    rollup_coverage,
    split_period,
    summed_histograms,
    turns_in,
)
from assistants.models import AssistantConfig
from calls.models import Call, Turn
from tenants import ratelimits
from tenants.models import RateLimit, Tenant

logger = logging.getLogger(__name__)

# A call with no final status callback after this long is not shown as live any more.
LIVE_WINDOW = timedelta(seconds=ratelimits.STALE_CALL_SECONDS)
LIVE_CALLS_LIMIT = 50
LIVE_TURNS_PER_CALL = 100
RECENT_CALLS_LIMIT = 20


def mask_number(number: str) -> str:
    """A caller's number with all but the last four digits hidden: `••••••0123`."""
    digits = re.sub(r"\D", "", number or "")
    if len(digits) < 7:
        return "••••" if number else ""
    return "••••••" + digits[-4:]


def _ratio(part: int | None, whole: int | None) -> float | None:
    return round(part / whole, 4) if whole and part is not None else None


def _derived(tally: Tally) -> dict[str, Any]:
    counts = tally.counts
    handled_calls = counts["calls"] - counts["rejected"]
    assistant_turns = counts["assistant_turns"]
    latency = tally.latency()
    return {
        "calls": counts["calls"],
        "answered": counts["answered"],
        "rejected": counts["rejected"],
        "failed": counts["failed"],
        "total_duration": counts["duration_total"],
        "avg_duration": (
            round(counts["duration_total"] / counts["duration_count"], 1)
            if counts["duration_count"]
            else None
        ),
        "turns": counts["turns"],
        "turns_per_call": round(counts["turns"] / handled_calls, 2) if handled_calls else None,
        "assistant_turns": assistant_turns,
        "first_token_p50": latency["first_token_p50"],
        "first_token_p90": latency["first_token_p90"],
        "turn_p50": latency["turn_p50"],
        "turn_p90": latency["turn_p90"],
        "fallback_rate": _ratio(counts["fallback_turns"], assistant_turns),
        "error_rate": _ratio(counts["error_turns"], assistant_turns),
        "cache_hit_rate": _ratio(counts["cache_hits"], assistant_turns),
        "tokens": counts["tokens_in"] + counts["tokens_out"],
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
    *,
    tenant_ids: list | None,
    period: Period,
    budget_tenant: Tenant | None = None,
    split: Split | None = None,
) -> dict:
    """The period's figures: calls by result, durations, turns per call, latency percentiles
    (ms), fallback/error/cache-hit rates over assistant turns, LLM tokens (and the budget of
    `budget_tenant` when one tenant is in view). `split`: how to read the period (default: from
    the rollups where they cover it)."""
    tally = group_tallies(tenant_ids, resolve_split(period, split), by_assistant=False).get(None)
    return _figures_of(tally or Tally(), period=period, budget_tenant=budget_tenant)


def _figures_of(tally: Tally, *, period: Period, budget_tenant: Tenant | None) -> dict:
    result = _derived(tally)
    budget = token_budget(tenant=budget_tenant, period=period) if budget_tenant else None
    result["token_budget"] = budget
    result["token_budget_used"] = _ratio(result["tokens"], budget)
    return result


def _chart_hours(period: Period) -> list[datetime]:
    """The UTC hours the period overlaps (in time zones a whole number of hours from UTC, these
    are its local hours)."""
    hours, at = [], floor_hour(period.start)
    while at < period.end:
        hours.append(at)
        at += timedelta(hours=1)
    return hours


def _chart_latency(counts: dict[str, dict]) -> dict[str, int | None]:
    """The chart's percentiles of one hour from its histograms."""
    first_token, turn = counts.get("first_token_ms") or {}, counts.get("turn_ms") or {}
    return {
        "first_token_p50": histograms.percentile(histograms.merge({}, first_token), 0.5),
        "turn_p50": histograms.percentile(histograms.merge({}, turn), 0.5),
        "turn_p90": histograms.percentile(histograms.merge({}, turn), 0.9),
    }


def charts(*, tenant_ids: list | None, period: Period, split: Split | None = None) -> dict:
    """Hourly series for the period: calls per hour, and p50/p90 of the LLM's first token and
    of the whole turn (ms) per hour. Hours without data are 0 calls / no latency (None)."""
    split = resolve_split(period, split)
    calls_by_hour: dict[datetime, int] = {}
    latency_by_hour: dict[datetime, dict] = {}
    if split.raw:
        call_rows = (
            calls_in(tenant_ids, split.raw)
            .annotate(hour=TruncHour("started_at", tzinfo=UTC))
            .values("hour")
            .annotate(n=Count("id"))
        )
        calls_by_hour.update((row["hour"], row["n"]) for row in call_rows.order_by())
        latency_rows = (
            turns_in(tenant_ids, split.raw)
            .filter(ASSISTANT)
            .annotate(hour=TruncHour("created_at", tzinfo=UTC))
            .values("hour")
            .annotate(
                first_token_p50=Percentile("llm_first_token_ms", 0.5),
                turn_p50=Percentile("response_sent_ms", 0.5),
                turn_p90=Percentile("response_sent_ms", 0.9),
            )
        )
        latency_by_hour.update((row["hour"], row) for row in latency_rows.order_by())
    if split.rollup is not None and tenant_ids is None:
        # Every tenant: one all-tenant row per hour.
        platform = PlatformHourlyStats.objects.filter(
            hour__gte=split.rollup[0], hour__lt=split.rollup[1]
        ).values_list("hour", "calls", *HISTOGRAM_FIELDS)
        for hour, n, *counts in platform:
            calls_by_hour[hour] = n
            latency_by_hour[hour] = _chart_latency(dict(zip(HISTOGRAM_FIELDS, counts, strict=True)))
    elif split.rollup is not None:
        rows = for_tenants(
            HourlyStats.objects.filter(hour__gte=split.rollup[0], hour__lt=split.rollup[1]),
            tenant_ids,
        )
        call_rows = rows.values("hour").annotate(n=Sum("calls")).order_by()
        calls_by_hour.update((row["hour"], row["n"]) for row in call_rows)
        by_hour: dict[datetime, dict[str, dict]] = defaultdict(dict)
        for hour, column, counts in summed_histograms(rows, "hour"):
            by_hour[hour][column] = counts
        for hour, counts in by_hour.items():
            latency_by_hour[hour] = _chart_latency(counts)
    labels, calls, first_token_p50, turn_p50, turn_p90 = [], [], [], [], []
    for at in _chart_hours(period):
        local = at.astimezone(period.tz)
        labels.append(local.strftime("%d %b %H:%M" if period.key != "today" else "%H:%M"))
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


def assistant_breakdown(
    *, tenant_ids: list | None, period: Period, split: Split | None = None
) -> list[dict]:
    """The period's figures per assistant config, busiest first, to compare configs."""
    tallies = group_tallies(tenant_ids, resolve_split(period, split), by_assistant=True)
    return _breakdown_of(tallies, tenant_ids=tenant_ids, period=period)


def _call_modes(tenant_ids: list | None, period: Period) -> dict[Any, list[str]]:
    """The modes (gather, relay, web) each assistant's calls of the period ran in: an
    assistant's mode can change, and web calls are made in any mode."""
    rows = (
        calls_in(tenant_ids, ((period.start, period.end),))
        .filter(assistant_id__isnull=False)
        .values_list("assistant_id", "mode")
        .distinct()
        .order_by()
    )
    modes: dict[Any, list[str]] = defaultdict(list)
    for assistant_id, mode in rows:
        modes[assistant_id].append(mode)
    return {assistant_id: sorted(found) for assistant_id, found in modes.items()}


def _breakdown_of(
    tallies: dict[Any, Tally], *, tenant_ids: list | None, period: Period
) -> list[dict]:
    ids = [assistant_id for assistant_id in tallies if assistant_id is not None]
    assistants = for_tenants(AssistantConfig.objects.filter(id__in=ids), tenant_ids)
    names = {a.id: (a.name, a.model, a.tenant.name) for a in assistants.select_related("tenant")}
    modes = _call_modes(tenant_ids, period) if names else {}
    result = []
    for assistant_id, tally in tallies.items():
        if assistant_id not in names:
            continue
        name, model, tenant_name = names[assistant_id]
        result.append(
            {
                "id": str(assistant_id),
                "name": name,
                "model": model,
                "modes": modes.get(assistant_id, []),
                "tenant": tenant_name,
                **_derived(tally),
            }
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
    qs = for_tenants(
        Call.objects.filter(status__in=Call.ACTIVE_STATUSES, started_at__gte=now - LIVE_WINDOW),
        tenant_ids,
    )
    calls = list(_with_turns(qs.order_by("started_at")[:LIVE_CALLS_LIMIT]))
    for call in calls:
        call.recent_turns = list(call.turns.all())[-LIVE_TURNS_PER_CALL:]
    return calls


def recent_calls(*, tenant_ids: list | None, limit: int = RECENT_CALLS_LIMIT) -> list[Call]:
    """The calls that ended most recently (rejected ones included)."""
    qs = for_tenants(Call.objects.exclude(status__in=Call.ACTIVE_STATUSES), tenant_ids)
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
    """Everything the dashboard shows for a period: figures, charts and per-assistant rows.

    `period.rollup` names the hours read from the hourly rollups (None: all from raw rows)."""
    with heavy_reads():
        split = split_period(period, rollup_coverage())
        rollup = (
            {"start": split.rollup[0].isoformat(), "end": split.rollup[1].isoformat()}
            if split.rollup
            else None
        )
        return {
            "period": {
                "key": period.key,
                "label": period.label,
                "start": period.start.isoformat(),
                "rollup": rollup,
            },
            **_figures_and_breakdown(tenant_ids, period, split, budget_tenant),
            "charts": charts(tenant_ids=tenant_ids, period=period, split=split),
            "routing": model_split(tenant_ids=tenant_ids, period=period),
        }


def _figures_and_breakdown(
    tenant_ids: list | None, period: Period, split: Split, budget_tenant: Tenant | None
) -> dict:
    """`figures` and `assistants` of a report. With a rollup part, the totals are the sum of
    the per-assistant groups, so the rollups are read once for both."""
    if split.rollup is None:
        return {
            "figures": figures(
                tenant_ids=tenant_ids, period=period, budget_tenant=budget_tenant, split=split
            ),
            "assistants": assistant_breakdown(tenant_ids=tenant_ids, period=period, split=split),
        }
    tallies = group_tallies(tenant_ids, split, by_assistant=True, unassigned=True)
    total = Tally()
    for tally in tallies.values():
        total.merge(tally)
    return {
        "figures": _figures_of(total, period=period, budget_tenant=budget_tenant),
        "assistants": _breakdown_of(tallies, tenant_ids=tenant_ids, period=period),
    }


def period_figures(
    *, tenant: Tenant, start: datetime, end: datetime, assistant_id: object = None
) -> dict:
    """The dashboard's figures for any [start, end) of one tenant (the REST API): its totals
    with its token budget, and a row for each of its assistants by name (only `assistant_id`'s
    when given; zeros for one without calls)."""
    period = Period(key="custom", label="Custom", start=start, end=end, tz=UTC)
    with heavy_reads():
        split = split_period(period, rollup_coverage())
        found = _figures_and_breakdown([tenant.id], period, split, tenant)
    rows = {row["id"]: row for row in found["assistants"]}
    assistants = AssistantConfig.objects.filter(tenant=tenant).order_by("name")
    if assistant_id is not None:
        assistants = assistants.filter(id=assistant_id)
    empty = _derived(Tally())
    return {
        "start": start,
        "end": end,
        "tenant": found["figures"],
        "assistants": [
            {**rows.get(str(a.id), empty), "assistant": a.id, "name": a.name} for a in assistants
        ],
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
