"""How the dashboard counts a period: which part of it the rollups answer (`Split`), and the
counts and latencies of its calls and turns from rollup rows and raw rows (`Tally`).

Rollup rows are summed in the database, latency histograms included (JSON expanded with
jsonb_each_text on PostgreSQL, json_each on SQLite, over the rows' own scoped query); raw rows are
aggregated as they always were, with exact percentiles when the whole period is raw.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Q, QuerySet, Sum
from django.utils.dateparse import parse_datetime

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
from analytics.models import ROLLUP_VERSION, DailyStats, HourlyStats, RollupState
from analytics.periods import Period
from analytics.services import ceil_day, ceil_hour, floor_day, floor_hour
from calls.models import Call, Turn


def for_tenants(qs: QuerySet, tenant_ids: list | None) -> QuerySet:
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


def resolve_split(period: Period, split: Split | None) -> Split:
    return split if split is not None else split_period(period, rollup_coverage())


def between(field: str, ranges: Ranges) -> Q:
    q = Q()
    for start, end in ranges:
        q |= Q(**{f"{field}__gte": start, f"{field}__lt": end})
    return q


def calls_in(tenant_ids: list | None, ranges: Ranges) -> QuerySet:
    return for_tenants(Call.objects.filter(between("started_at", ranges)), tenant_ids)


def turns_in(tenant_ids: list | None, ranges: Ranges) -> QuerySet:
    return for_tenants(Turn.objects.filter(between("created_at", ranges)), tenant_ids)


def rollup_sources(tenant_ids: list | None, split: Split) -> list[QuerySet]:
    """The rollup rows of the split's rollup part: daily rows for its days, hourly ones for
    the other hours."""
    sources = []
    if split.days:
        days = DailyStats.objects.filter(day__gte=split.days[0], day__lt=split.days[1])
        sources.append(for_tenants(days, tenant_ids))
    if split.hours:
        hours = HourlyStats.objects.filter(between("hour", split.hours))
        sources.append(for_tenants(hours, tenant_ids))
    return sources


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
class Tally:
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

    def merge(self, other: Tally) -> None:
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


def summed_histograms(rows: QuerySet, group: str | None) -> list[tuple[Any, str, dict]]:
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


def group_tallies(
    tenant_ids: list | None, split: Split, *, by_assistant: bool, unassigned: bool = False
) -> dict[Any, Tally]:
    """Counts and latencies of the period, in one group (key None) or per assistant id (calls
    without an assistant left out, or under None with `unassigned`). Rollup rows are summed in
    the database; the raw ranges are aggregated as before, with exact percentiles when there is
    no rollup part."""
    groups: dict[Any, Tally] = defaultdict(Tally)
    exact = split.rollup is None
    if split.raw:
        calls, turns = calls_in(tenant_ids, split.raw), turns_in(tenant_ids, split.raw)
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
            groups[row["key"]].add(row)
        for row in turn_rows:
            tally = groups[row["key"]]
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
                        counts = groups[key].histograms[column]
                        counts[edge] = counts.get(edge, 0) + 1
    sums = {name: Sum(name) for name in COUNT_FIELDS}
    for rows in rollup_sources(tenant_ids, split):
        if by_assistant:
            rows = rows if unassigned else rows.filter(assistant__isnull=False)
            rollup_rows = rows.values(key=F("assistant_id")).annotate(**sums).order_by()
        else:
            rollup_rows = [{"key": None, **rows.aggregate(**sums)}]
        for row in rollup_rows:
            groups[row["key"]].add(row)
        group = "assistant_id" if by_assistant else None
        for key, column, counts in summed_histograms(rows, group):
            histograms.merge(groups[key].histograms[column], counts)
    return groups
