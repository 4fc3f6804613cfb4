"""Writes of the analytics app: the rollups and where they stand (RollupState).

HourlyStats rows are recomputed from the calls and turns, never incremented: whole hours at a
time (delete and insert in one transaction, holding the RollupState row lock), with the
all-tenant rows of those hours and the daily rows of their days derived in the same
transaction. So a run repeated changes nothing, and the call pipeline does no extra work.
A run (`hourly_stats_refresh`, every ANALYTICS_ROLLUP_SECONDS) redoes:

- the hours written to since the last run, RECENT_MARGIN included: calls and turns are stamped
  with the time they are written, and the margin covers transactions that commit a little after
  their timestamp;
- the hours of calls in progress at the last run or now: a call changes (status, duration,
  outcome) when it ends, which may be hours after the hour it started in, where it is counted;
- older history not covered yet, BACKFILL_HOURS_PER_RUN at a time, until the oldest call or turn
  (`manage.py rollup_analytics --all` does it all at once).

The current hour is never rolled up: the dashboard reads it from the calls and turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.db.models.functions import TruncHour
from django.utils import timezone
from django_scopes import scopes_disabled

from analytics import histograms
from analytics.definitions import (
    ASSISTANT,
    CALL_COUNT_FIELDS,
    COUNT_FIELDS,
    HISTOGRAM_FIELDS,
    TURN_COUNT_FIELDS,
    call_counts,
    turn_counts,
)
from analytics.models import (
    ROLLUP_VERSION,
    DailyStats,
    HourlyStats,
    PlatformHourlyStats,
    RollupState,
    Stats,
)
from calls.models import Call, Turn

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
RECENT_MARGIN = timedelta(minutes=10)
# Calls still "in progress" after this long never got their final status callback; if one ever
# does, `rollup_analytics --since` brings its hour up to date.
OPEN_CALL_LOOKBACK = timedelta(days=2)
BACKFILL_HOURS_PER_RUN = 24


def floor_hour(at: datetime) -> datetime:
    """The start of the UTC hour holding `at`."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(at: datetime) -> datetime:
    """Midnight UTC starting the day that holds `at`."""
    return floor_hour(at).replace(hour=0)


def ceil_day(at: datetime) -> datetime:
    """The first midnight UTC at or after `at`."""
    start = floor_day(at)
    return start if start == at else start + DAY


def ceil_hour(at: datetime) -> datetime:
    """The first UTC hour start at or after `at`."""
    start = floor_hour(at)
    return start if start == at else start + HOUR


def _hours(start: datetime, end: datetime) -> list[datetime]:
    hours, at = [], start
    while at < end:
        hours.append(at)
        at += HOUR
    return hours


def _runs(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Hours as contiguous [start, end) ranges, oldest first."""
    runs: list[list[datetime]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR
        else:
            runs.append([hour, hour + HOUR])
    return [(start, end) for start, end in runs]


def _compute(start: datetime, end: datetime) -> list[HourlyStats]:
    """HourlyStats rows for the whole hours in [start, end), from the calls and turns."""
    rows: dict[tuple, HourlyStats] = {}

    def row(tenant_id: object, assistant_id: object, hour: datetime) -> HourlyStats:
        key = (tenant_id, assistant_id, hour)
        if key not in rows:
            rows[key] = HourlyStats(tenant_id=tenant_id, assistant_id=assistant_id, hour=hour)
        return rows[key]

    calls = (
        Call.objects.filter(started_at__gte=start, started_at__lt=end)
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values("tenant_id", "assistant_id", "hour")
        .annotate(**call_counts())
        .order_by()
    )
    for counts in calls:
        stats = row(counts["tenant_id"], counts["assistant_id"], counts["hour"])
        for name in CALL_COUNT_FIELDS:
            setattr(stats, name, counts[name] or 0)

    turns = Turn.objects.filter(created_at__gte=start, created_at__lt=end)
    turn_rows = (
        turns.annotate(hour=TruncHour("created_at", tzinfo=UTC), assistant=F("call__assistant_id"))
        .values("tenant_id", "assistant", "hour")
        .annotate(**turn_counts())
        .order_by()
    )
    for counts in turn_rows:
        stats = row(counts["tenant_id"], counts["assistant"], counts["hour"])
        for name in TURN_COUNT_FIELDS:
            setattr(stats, name, counts[name] or 0)

    latencies = (
        turns.filter(ASSISTANT)
        .values_list(
            "tenant_id",
            "call__assistant_id",
            "created_at",
            "llm_first_token_ms",
            "response_sent_ms",
        )
        .order_by()
    )
    histos: dict[tuple, tuple[dict, dict]] = {}
    for tenant_id, assistant_id, created_at, first_token, sent in latencies.iterator(5000):
        key = (tenant_id, assistant_id, floor_hour(created_at))
        first_token_ms, turn_ms = histos.setdefault(key, ({}, {}))
        if first_token is not None:
            edge = histograms.bucket(first_token)
            first_token_ms[edge] = first_token_ms.get(edge, 0) + 1
        if sent is not None:
            edge = histograms.bucket(sent)
            turn_ms[edge] = turn_ms.get(edge, 0) + 1
    for key, (first_token_ms, turn_ms) in histos.items():
        stats = row(*key)
        stats.first_token_ms = histograms.as_json(first_token_ms)
        stats.turn_ms = histograms.as_json(turn_ms)
    return list(rows.values())


def _add(into: Stats, row: Stats) -> None:
    for name in COUNT_FIELDS:
        setattr(into, name, getattr(into, name) + getattr(row, name))
    for name in HISTOGRAM_FIELDS:
        setattr(into, name, histograms.merge(getattr(into, name), getattr(row, name)))


def _finish(rows: Iterable[Stats]) -> list[Stats]:
    """Rows added up with _add, their histograms back in their stored form."""
    rows = list(rows)
    for row in rows:
        for name in HISTOGRAM_FIELDS:
            setattr(row, name, histograms.as_json(getattr(row, name)))
    return rows


def _replace(start: datetime, end: datetime) -> int:
    """Recompute the hours in [start, end), and their all-tenant rows; the caller holds the
    state lock. Returns the HourlyStats rows written."""
    rows = _compute(start, end)
    HourlyStats.objects.filter(hour__gte=start, hour__lt=end).delete()
    HourlyStats.objects.bulk_create(rows, batch_size=500)
    platform: dict[datetime, PlatformHourlyStats] = {}
    for row in rows:
        _add(platform.setdefault(row.hour, PlatformHourlyStats(hour=row.hour)), row)
    PlatformHourlyStats.objects.filter(hour__gte=start, hour__lt=end).delete()
    PlatformHourlyStats.objects.bulk_create(_finish(platform.values()), batch_size=500)
    return len(rows)


def _replace_days(days: Iterable[datetime], covered: tuple[datetime, datetime]) -> None:
    """Recompute the DailyStats of `days` from their HourlyStats; a day only partly in the
    `covered` hours gets none."""
    for day in sorted(set(days)):
        DailyStats.objects.filter(day=day).delete()
        if not covered[0] <= day <= covered[1] - DAY:
            continue
        totals: dict[tuple, DailyStats] = {}
        for row in HourlyStats.objects.filter(hour__gte=day, hour__lt=day + DAY).iterator():
            key = (row.tenant_id, row.assistant_id)
            if key not in totals:
                totals[key] = DailyStats(
                    tenant_id=row.tenant_id, assistant_id=row.assistant_id, day=day
                )
            _add(totals[key], row)
        DailyStats.objects.bulk_create(_finish(totals.values()), batch_size=500)


def _days(hours: Iterable[datetime]) -> set[datetime]:
    return {floor_day(hour) for hour in hours}


def _locked_state() -> RollupState:
    """The state row, locked until the transaction ends (it serialises rollup writers).
    Rollups of another ROLLUP_VERSION are thrown away."""
    state, _ = RollupState.objects.select_for_update().get_or_create(pk=1)
    if state.version != ROLLUP_VERSION:
        for model in (HourlyStats, DailyStats, PlatformHourlyStats):
            model.objects.all().delete()
        state.covered_from = state.covered_until = state.refreshed_at = None
        state.open_hours = []
        state.version = ROLLUP_VERSION
    return state


def _open_call_hours(now: datetime) -> set[datetime]:
    """The hours in which calls still in progress started."""
    hours = (
        Call.objects.filter(
            status__in=Call.ACTIVE_STATUSES, started_at__gte=now - OPEN_CALL_LOOKBACK
        )
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values_list("hour", flat=True)
        .order_by()
        .distinct()
    )
    return set(hours)


def _oldest_hour() -> datetime | None:
    """The hour of the oldest call or turn, None when there are none."""
    oldest = [
        Call.objects.order_by("started_at").values_list("started_at", flat=True).first(),
        Turn.objects.order_by("created_at").values_list("created_at", flat=True).first(),
    ]
    known = [at for at in oldest if at is not None]
    return floor_hour(min(known)) if known else None


@dataclass(frozen=True)
class RollupRun:
    """What a rollup run did: hours recomputed, rows written, the hours now covered."""

    hours: int
    rows: int
    covered_from: datetime | None
    covered_until: datetime | None


def hourly_stats_refresh(*, now: datetime | None = None) -> RollupRun:
    """Bring the rollups up to date (the beat task's work; see the module docstring)."""
    now = now or timezone.now()
    current = floor_hour(now)
    with scopes_disabled(), transaction.atomic():
        state = _locked_state()
        hours: set[datetime] = set()
        if state.covered_until is None:
            covered_from = current
        else:
            covered_from = state.covered_from or current
            since = state.covered_until
            if state.refreshed_at is not None:
                since = min(since, state.refreshed_at - RECENT_MARGIN)
            hours.update(_hours(floor_hour(since), current))
            hours.update(datetime.fromisoformat(hour) for hour in state.open_hours)
        open_now = {hour for hour in _open_call_hours(now) if hour < current}
        hours.update(open_now)
        oldest = _oldest_hour()
        if oldest is not None and oldest < covered_from:
            chunk_start = max(oldest, covered_from - BACKFILL_HOURS_PER_RUN * HOUR)
            hours.update(_hours(chunk_start, covered_from))
            covered_from = chunk_start
        hours = {hour for hour in hours if covered_from <= hour < current}
        rows = sum(_replace(start, end) for start, end in _runs(hours))
        _replace_days(_days(hours), (covered_from, current))
        state.covered_from, state.covered_until = covered_from, current
        state.open_hours = [hour.isoformat() for hour in sorted(open_now)]
        state.refreshed_at = now
        state.save()
    return RollupRun(len(hours), rows, state.covered_from, state.covered_until)


def hourly_stats_backfill(
    *,
    since: datetime | None,
    now: datetime | None = None,
    chunk_hours: int = BACKFILL_HOURS_PER_RUN,
    progress: Callable[[datetime, datetime, int], None] | None = None,
) -> RollupRun:
    """Recompute every hour from `since` (None: from the oldest call or turn) up to the current
    hour, newest first, one transaction per `chunk_hours`; the hours covered grow with each
    chunk. `progress(start, end, rows)` is called after each chunk."""
    now = now or timezone.now()
    current = floor_hour(now)
    with scopes_disabled():
        first = floor_hour(since) if since is not None else _oldest_hour()
        open_now = {hour for hour in _open_call_hours(now) if hour < current}
    total_hours = total_rows = 0
    state = RollupState.objects.filter(pk=1).first()
    covered = (state.covered_from, state.covered_until) if state else (None, None)
    end = current
    while first is not None and end > first:
        start = max(first, end - chunk_hours * HOUR)
        with scopes_disabled(), transaction.atomic():
            state = _locked_state()
            rows = _replace(start, end)
            old_from, old_until = state.covered_from, state.covered_until
            # [start, current) is computed now; join it to what was covered if they touch.
            if old_from is not None and old_until is not None and start <= old_until:
                state.covered_from = min(old_from, start)
                state.covered_until = max(old_until, current)
            else:
                state.covered_from, state.covered_until = start, current
            _replace_days(_days(_hours(start, end)), (state.covered_from, state.covered_until))
            # Calls in progress now: the next refresh redoes their hours when they end.
            state.open_hours = sorted(
                {*state.open_hours, *(h.isoformat() for h in open_now if start <= h < end)}
            )
            state.save()
            covered = (state.covered_from, state.covered_until)
        total_hours += len(_hours(start, end))
        total_rows += rows
        if progress is not None:
            progress(start, end, rows)
        end = start
    return RollupRun(total_hours, total_rows, *covered)
