"""The rollups: built from the calls and turns, idempotent, kept up to date as calls end and
history is backfilled, scoped to tenants; the beat task and the command."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django_scopes import scope, scopes_disabled

from analytics.models import DailyStats, HourlyStats, PlatformHourlyStats, RollupState
from analytics.services import floor_hour, hourly_stats_backfill, hourly_stats_refresh
from analytics.tasks import refresh_rollups
from analytics.tests.conftest import _call, _turns, answer, caller
from calls.models import Call, Turn
from calls.services import call_status_update

pytestmark = pytest.mark.django_db

H = timedelta(hours=1)


def snapshot() -> list[tuple]:
    """Every rollup row, without ids."""
    rows = []
    with scopes_disabled():
        for model in (HourlyStats, DailyStats, PlatformHourlyStats):
            fields = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
            rows += [(model.__name__, *map(str, row)) for row in model.objects.values_list(*fields)]
    return sorted(rows)


def test_recomputing_is_idempotent(book, rolled_up):
    first = snapshot()
    assert first
    hourly_stats_backfill(since=None, now=book.now)
    hourly_stats_refresh(now=book.now)
    hourly_stats_refresh(now=book.now)
    assert snapshot() == first


def test_an_hour_counts_its_calls_and_turns(book, tenant_a, assistant_a):
    hour = floor_hour(book.now) - 40 * H
    with scopes_disabled():
        started = hour + timedelta(minutes=10)
        call = _call(tenant_a, assistant_a, "CAHOUR", started, duration_seconds=60)
        _turns(
            call,
            [
                caller(),
                answer(
                    llm_first_token_ms=100,
                    response_sent_ms=400,
                    tokens_in=50,
                    tokens_out=10,
                    fallbacks=["llama-3.1-8b-instant"],
                ),
                caller(),
                answer(response_sent_ms=50, cache_hit=True, error="LLM timeout"),
            ],
        )
    hourly_stats_backfill(since=hour, now=book.now)
    with scopes_disabled():
        row = HourlyStats.objects.get(hour=hour)
    assert (row.tenant_id, row.assistant_id) == (tenant_a.id, assistant_a.id)
    assert (row.calls, row.answered, row.failed, row.rejected) == (1, 1, 0, 0)
    assert (row.duration_total, row.duration_count) == (60, 1)
    assert (row.turns, row.assistant_turns, row.tokens_in, row.tokens_out) == (4, 2, 50, 10)
    assert (row.fallback_turns, row.error_turns, row.cache_hits) == (1, 1, 1)
    assert row.first_token_ms == {"99": 1}  # 100 ms is in the bucket [99, 104)
    assert row.turn_ms == {"50": 1, "385": 1}  # 50 ms and 400 ms ([385, 404))


def test_a_call_that_ends_hours_after_it_started_is_picked_up(book, tenant_a, assistant_a):
    now = book.now
    with scopes_disabled():
        long_call = _call(
            tenant_a,
            assistant_a,
            "CALONG",
            now - 3 * H,
            status=Call.Status.IN_PROGRESS,
            duration_seconds=None,
        )
        _turns(long_call, [caller(), answer(llm_first_token_ms=150, response_sent_ms=700)])
    hourly_stats_refresh(now=now)
    long_hour = floor_hour(long_call.started_at)
    assert long_hour.isoformat() in RollupState.objects.get().open_hours
    with scopes_disabled():
        row = HourlyStats.objects.get(hour=long_hour, assistant=assistant_a)
    assert (row.calls, row.failed, row.duration_count) == (1, 0, 0)

    # The status callback arrives now, stamped with Twilio's time of the end (long ago); and a
    # turn of another long call lands in the current hour, which closes before the next run.
    with scope(tenant=[tenant_a.id]):
        call_status_update(
            call=long_call,
            status=Call.Status.FAILED,
            sequence=None,
            duration=600,
            timestamp=now - 3 * H + timedelta(minutes=10),
        )
    with scopes_disabled():
        Turn.objects.create(
            tenant=tenant_a,
            call=book.calls["c5"],
            sequence=3,
            role=Turn.Role.ASSISTANT,
            created_at=now + timedelta(minutes=1),
            response_sent_ms=4000,
        )
    later = now + 2 * H
    run = hourly_stats_refresh(now=later)
    assert long_hour.isoformat() not in RollupState.objects.get().open_hours
    with scopes_disabled():
        row = HourlyStats.objects.get(hour=long_hour, assistant=assistant_a)
        assert (row.calls, row.failed, row.duration_total, row.duration_count) == (1, 1, 600, 1)
        covered = {"hour__gte": run.covered_from, "hour__lt": run.covered_until}
        rolled_turns = HourlyStats.objects.filter(tenant=tenant_a, **covered).aggregate(
            n=Sum("turns")
        )["n"]
        turns = Turn.objects.filter(
            tenant=tenant_a, created_at__gte=run.covered_from, created_at__lt=run.covered_until
        ).count()
    assert rolled_turns == turns == 13  # the new turn included


def test_the_first_run_starts_with_a_day_and_backfills_a_day_per_run(book):
    now = book.now
    first = hourly_stats_refresh(now=now)
    assert first.covered_from == floor_hour(now) - 24 * H
    second = hourly_stats_refresh(now=now + timedelta(minutes=1))
    assert second.covered_from == floor_hour(now) - 48 * H
    for minute in range(2, 15):
        last = hourly_stats_refresh(now=now + timedelta(minutes=minute))
    oldest = floor_hour(book.calls["old"].started_at)
    assert last.covered_from == oldest  # and no further: there is nothing older
    assert last.hours <= 2


def test_daily_and_all_tenant_rows_add_up_their_hours(book, rolled_up):
    with scopes_disabled():
        day = DailyStats.objects.order_by("day").first()
        hours = HourlyStats.objects.filter(
            hour__gte=day.day,
            hour__lt=day.day + timedelta(days=1),
            tenant_id=day.tenant_id,
            assistant_id=day.assistant_id,
        )
        assert day.calls == sum(h.calls for h in hours) and day.turns == sum(h.turns for h in hours)
        platform = PlatformHourlyStats.objects.get(hour=floor_hour(book.calls["b"].started_at))
        assert platform.tokens_in == 1000  # tenant B's call, in the all-tenant row of its hour
        # Days not wholly covered have no daily row (today, the day of the oldest call).
        days = set(DailyStats.objects.values_list("day", flat=True))
    assert days and all(
        floor_hour(book.calls["old"].started_at) <= day < floor_hour(book.now) - 23 * H
        for day in days
    )


def test_rollup_rows_are_scoped_to_tenants(book, rolled_up, tenant_a, tenant_b):
    with scope(tenant=[tenant_a.id]):
        tenants = set(HourlyStats.objects.values_list("tenant_id", flat=True))
        days = set(DailyStats.objects.values_list("tenant_id", flat=True))
    assert tenants == {tenant_a.id} and days <= {tenant_a.id}
    with scopes_disabled():
        assert set(HourlyStats.objects.values_list("tenant_id", flat=True)) == {
            tenant_a.id,
            tenant_b.id,
        }


def test_rollups_of_another_version_are_thrown_away(book, rolled_up):
    RollupState.objects.update(version=0)
    with scopes_disabled():
        HourlyStats.objects.update(calls=999)
    hourly_stats_refresh(now=book.now)
    with scopes_disabled():
        assert not HourlyStats.objects.filter(calls=999).exists()
    assert RollupState.objects.get().covered_from == floor_hour(book.now) - 24 * H


def test_the_beat_task_and_the_command_run(book):
    entry = django_settings.CELERY_BEAT_SCHEDULE["refresh-analytics-rollups"]
    assert entry["task"] == refresh_rollups.name == "analytics.tasks.refresh_rollups"
    assert entry["schedule"] == django_settings.ANALYTICS_ROLLUP_SECONDS

    result = refresh_rollups.apply().get()
    assert result["rows"] > 0 and result["covered_until"] is not None

    out = StringIO()
    call_command("rollup_analytics", "--all", stdout=out)
    assert "Rollups cover" in out.getvalue()
    assert RollupState.objects.get().covered_from == floor_hour(book.calls["old"].started_at)
    out = StringIO()
    call_command("rollup_analytics", "--since", "2d", "-v", "2", stdout=out)
    assert out.getvalue().count(" rows\n") == 2  # two days, a line each
    call_command("rollup_analytics", "--since", "2026-01-01", stdout=StringIO())
    call_command("rollup_analytics", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("rollup_analytics", "--since", "last tuesday")
