"""Reads for the dashboard: figures, charts, per-assistant breakdown, live and finished calls.

Every selector takes `tenant_ids`: the tenants the viewer may see, or None for platform staff
looking at every tenant. The tenant filter is always written out, even inside a tenant scope.

A period's figures add up two parts (see `Split`): the whole hours covered by the rollups
(analytics.models: hourly rows, daily rows for whole days, all-tenant hourly rows for the charts
of staff; a beat task keeps them up to date) and the rest -- partial hours at the edges, the
current hour, anything not rolled up yet -- aggregated from the calls and turns (indexes
(tenant, -started_at) on Call and (tenant, created_at) on Turn). With no rollup part the
figures are exact; with one, latency percentiles come from merged histograms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import re
import threading
import time
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_scopes import scope, scopes_disabled

from analytics import histograms
from analytics.aggregates import Percentile
from analytics.definitions import (
    ASSISTANT,
    COUNT_FIELDS,
    HISTOGRAM_FIELDS,
    LATENCIES,
    call_counts,
    turn_counts,
)
from analytics.models import (
    ROLLUP_VERSION,
    DailyStats,
    HourlyStats,
    PlatformHourlyStats,
    RollupState,
)
from analytics.services import ceil_day, ceil_hour, floor_day, floor_hour
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


# --- Which part of a period the rollups answer ------------------------------------------------


Ranges = tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True)
class Split:
    """How a period is read. `rollup`: the whole UTC hours [start, end) read from the rollups
    -- its whole UTC `days` from DailyStats, its other `hours` from HourlyStats; `raw`: the rest
    (partial hours at the edges, hours not rolled up yet) from the calls and turns. Without a
    rollup part the figures are exact; with one, percentiles come from histograms (~5 %)."""

    rollup: tuple[datetime, datetime] | None
    raw: Ranges
    days: tuple[datetime, datetime] | None = None
    hours: Ranges = ()


def rollup_coverage() -> tuple[datetime, datetime] | None:
    """The hours [from, until) the rollups cover, None when they cover none (or are switched
    off: nothing keeps them up to date then)."""
    if settings.ANALYTICS_ROLLUP_SECONDS <= 0:
        return None
    row = (
        RollupState.objects.filter(pk=1, version=ROLLUP_VERSION)
        .values_list("covered_from", "covered_until")
        .first()
    )
    if row is None or None in row or row[0] >= row[1]:
        return None
    return row


def split_period(period: Period, coverage: tuple[datetime, datetime] | None) -> Split:
    """The whole hours of `period` that `coverage` covers come from the rollups, the rest raw."""
    whole = ((period.start, period.end),)
    if coverage is None:
        return Split(None, whole)
    start = max(ceil_hour(period.start), coverage[0])
    end = min(floor_hour(period.end), coverage[1])
    if start >= end:
        return Split(None, whole)
    raw = tuple((a, b) for a, b in ((period.start, start), (end, period.end)) if a < b)
    first_day, last_day = ceil_day(start), floor_day(end)
    if first_day >= last_day:
        return Split((start, end), raw, None, ((start, end),))
    hours = tuple((a, b) for a, b in ((start, first_day), (last_day, end)) if a < b)
    return Split((start, end), raw, (first_day, last_day), hours)


def _split(period: Period, split: Split | None) -> Split:
    return split if split is not None else split_period(period, rollup_coverage())


def _between(field: str, ranges: Ranges) -> Q:
    q = Q()
    for start, end in ranges:
        q |= Q(**{f"{field}__gte": start, f"{field}__lt": end})
    return q


def _calls(tenant_ids: list | None, ranges: Ranges) -> QuerySet:
    return _for_tenants(Call.objects.filter(_between("started_at", ranges)), tenant_ids)


def _turns(tenant_ids: list | None, ranges: Ranges) -> QuerySet:
    return _for_tenants(Turn.objects.filter(_between("created_at", ranges)), tenant_ids)


def _rollups(tenant_ids: list | None, split: Split) -> list[QuerySet]:
    """The rollup rows of the split's rollup part: daily rows for its days, hourly ones for
    the other hours."""
    sources = []
    if split.days:
        days = DailyStats.objects.filter(day__gte=split.days[0], day__lt=split.days[1])
        sources.append(_for_tenants(days, tenant_ids))
    if split.hours:
        hours = HourlyStats.objects.filter(_between("hour", split.hours))
        sources.append(_for_tenants(hours, tenant_ids))
    return sources


def _ratio(part: int | None, whole: int | None) -> float | None:
    return round(part / whole, 4) if whole and part is not None else None


# --- Counting: raw rows and rollup rows into tallies -------------------------------------------

# (figure, histogram field, fraction)
LATENCY_FIGURES = (
    ("first_token_p50", "first_token_ms", 0.5),
    ("first_token_p90", "first_token_ms", 0.9),
    ("turn_p50", "turn_ms", 0.5),
    ("turn_p90", "turn_ms", 0.9),
)
_TURN_FIELD = {column: turn_field for turn_field, column in LATENCIES}


def _exact_latency() -> dict[str, Any]:
    return {
        name: Percentile(_TURN_FIELD[column], fraction, filter=ASSISTANT)
        for name, column, fraction in LATENCY_FIGURES
    }


@dataclass
class _Tally:
    """Counts and latencies of a group of calls and turns, from raw rows and rollup rows."""

    counts: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0)
    )
    histograms: dict[str, dict[int, int]] = dataclasses.field(
        default_factory=lambda: {column: {} for column in HISTOGRAM_FIELDS}
    )
    exact: dict[str, Any] | None = None  # exact percentiles, when every row was raw

    def add(self, row: dict) -> None:
        for name in COUNT_FIELDS:
            self.counts[name] += row.get(name) or 0

    def merge(self, other: _Tally) -> None:
        """Add another group's counts and histograms (not exact percentiles: histogram mode)."""
        self.add(other.counts)
        for column, counts in other.histograms.items():
            histograms.merge(self.histograms[column], counts)

    def latency(self) -> dict[str, Any]:
        if self.exact is not None:
            return self.exact
        return {
            name: histograms.percentile(self.histograms[column], fraction)
            for name, column, fraction in LATENCY_FIGURES
        }


def _summed_histograms(rows: QuerySet, group: str | None) -> list[tuple[Any, str, dict]]:
    """The latency histograms of the rollup `rows` added up by the database, per value of
    `group` (a HourlyStats column, or None for one group): (group value, field, {edge: count}).

    The rows' own query (tenant filter and scope included) is the subquery.
    """
    each = "jsonb_each_text" if connection.vendor == "postgresql" else "json_each"
    inner, params = rows.values(*filter(None, [group]), *HISTOGRAM_FIELDS).query.sql_with_params()
    # Hours as text: tens of thousands of (hour, bucket) rows parse faster as a few strings.
    key = {None: "NULL", "hour": "CAST(s.hour AS TEXT)"}.get(group, f"s.{group}")
    group_by = f"{key}, " if group else ""
    sql = " UNION ALL ".join(
        f"SELECT {key}, {i}, CAST(j.key AS INTEGER), SUM(CAST(j.value AS INTEGER)) "
        f"FROM ({inner}) s, {each}(s.{column}) j GROUP BY {group_by}CAST(j.key AS INTEGER)"
        for i, column in enumerate(HISTOGRAM_FIELDS)
    )
    merged: dict[tuple, dict[int, int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params) * len(HISTOGRAM_FIELDS))
        for value, i, edge, count in cursor.fetchall():
            merged.setdefault((value, i), {})[edge] = count
    values = {value: _group_value(group, value) for value, _ in merged}
    return [(values[value], HISTOGRAM_FIELDS[i], counts) for (value, i), counts in merged.items()]


def _group_value(group: str | None, value: Any) -> Any:
    """A group value read by raw SQL as the ORM reads it (hours are text; SQLite gives UUIDs
    as text too)."""
    if value is None or not isinstance(value, str):
        return value
    if group == "hour":
        at = parse_datetime(value)
        return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)
    return uuid.UUID(value)


def _tallies(
    tenant_ids: list | None, split: Split, *, by_assistant: bool, unassigned: bool = False
) -> dict[Any, _Tally]:
    """Counts and latencies of the period, in one group (key None) or per assistant id (calls
    without an assistant left out, or under None with `unassigned`). Rollup rows are summed in
    the database; the raw ranges are aggregated as before, with exact percentiles when there is
    no rollup part."""
    tallies: dict[Any, _Tally] = defaultdict(_Tally)
    exact = split.rollup is None
    if split.raw:
        calls, turns = _calls(tenant_ids, split.raw), _turns(tenant_ids, split.raw)
        turn_aggregates = {**turn_counts(), **(_exact_latency() if exact else {})}
        if by_assistant:
            if not unassigned:
                calls = calls.filter(assistant__isnull=False)
                turns = turns.filter(call__assistant__isnull=False)
            calls = calls.values(key=F("assistant_id"))
            grouped = turns.values(key=F("call__assistant_id"))
            call_rows = calls.annotate(**call_counts()).order_by()
            turn_rows = grouped.annotate(**turn_aggregates).order_by()
        else:
            call_rows = [{"key": None, **calls.aggregate(**call_counts())}]
            turn_rows = [{"key": None, **turns.aggregate(**turn_aggregates)}]
        for row in call_rows:
            tallies[row["key"]].add(row)
        for row in turn_rows:
            tally = tallies[row["key"]]
            tally.add(row)
            if exact:
                tally.exact = {name: row[name] for name, _, _ in LATENCY_FIGURES}
        if not exact:
            answers = turns.filter(ASSISTANT).order_by()
            if by_assistant:
                latencies = answers.values_list("call__assistant_id", *_TURN_FIELD.values())
            else:
                latencies = ((None, *row) for row in answers.values_list(*_TURN_FIELD.values()))
            for key, *values in latencies:
                for column, value in zip(HISTOGRAM_FIELDS, values, strict=True):
                    if value is not None:
                        edge = histograms.bucket(value)
                        counts = tallies[key].histograms[column]
                        counts[edge] = counts.get(edge, 0) + 1
    sums = {name: Sum(name) for name in COUNT_FIELDS}
    for rows in _rollups(tenant_ids, split):
        if by_assistant:
            rows = rows if unassigned else rows.filter(assistant__isnull=False)
            rollup_rows = rows.values(key=F("assistant_id")).annotate(**sums).order_by()
        else:
            rollup_rows = [{"key": None, **rows.aggregate(**sums)}]
        for row in rollup_rows:
            tallies[row["key"]].add(row)
        group = "assistant_id" if by_assistant else None
        for key, column, counts in _summed_histograms(rows, group):
            histograms.merge(tallies[key].histograms[column], counts)
    return tallies


def _derived(tally: _Tally) -> dict[str, Any]:
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
    tally = _tallies(tenant_ids, _split(period, split), by_assistant=False).get(None)
    return _figures_of(tally or _Tally(), period=period, budget_tenant=budget_tenant)


def _figures_of(tally: _Tally, *, period: Period, budget_tenant: Tenant | None) -> dict:
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
    split = _split(period, split)
    calls_by_hour: dict[datetime, int] = {}
    latency_by_hour: dict[datetime, dict] = {}
    if split.raw:
        call_rows = (
            _calls(tenant_ids, split.raw)
            .annotate(hour=TruncHour("started_at", tzinfo=UTC))
            .values("hour")
            .annotate(n=Count("id"))
        )
        calls_by_hour.update((row["hour"], row["n"]) for row in call_rows.order_by())
        latency_rows = (
            _turns(tenant_ids, split.raw)
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
            latency_by_hour[hour] = _chart_latency(
                dict(zip(HISTOGRAM_FIELDS, counts, strict=True))
            )
    elif split.rollup is not None:
        rows = _for_tenants(
            HourlyStats.objects.filter(hour__gte=split.rollup[0], hour__lt=split.rollup[1]),
            tenant_ids,
        )
        call_rows = rows.values("hour").annotate(n=Sum("calls")).order_by()
        calls_by_hour.update((row["hour"], row["n"]) for row in call_rows)
        by_hour: dict[datetime, dict[str, dict]] = defaultdict(dict)
        for hour, column, counts in _summed_histograms(rows, "hour"):
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
    tallies = _tallies(tenant_ids, _split(period, split), by_assistant=True)
    return _breakdown_of(tallies, tenant_ids=tenant_ids)


def _breakdown_of(tallies: dict[Any, _Tally], *, tenant_ids: list | None) -> list[dict]:
    ids = [assistant_id for assistant_id in tallies if assistant_id is not None]
    assistants = _for_tenants(AssistantConfig.objects.filter(id__in=ids), tenant_ids)
    names = {
        a.id: (a.name, a.model, a.mode, a.tenant.name) for a in assistants.select_related("tenant")
    }
    result = []
    for assistant_id, tally in tallies.items():
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
                **_derived(tally),
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
                "key": period.key, "label": period.label, "start": period.start.isoformat(),
                "rollup": rollup,
            },  # fmt: skip
            **_figures_and_breakdown(tenant_ids, period, split, budget_tenant),
            "charts": charts(tenant_ids=tenant_ids, period=period, split=split),
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
    tallies = _tallies(tenant_ids, split, by_assistant=True, unassigned=True)
    total = _Tally()
    for tally in tallies.values():
        total.merge(tally)
    return {
        "figures": _figures_of(total, period=period, budget_tenant=budget_tenant),
        "assistants": _breakdown_of(tallies, tenant_ids=tenant_ids),
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
