"""The dashboard's figures from the rollups: whole hours (and days) summed from them, the rest
of a period from the calls and turns; equal to the figures from raw rows alone (counts and sums
exactly, percentiles within their ~5 % bucket), for every viewer and only for their tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django_scopes import scope, scopes_disabled

from analytics import histograms, periods, selectors
from analytics.models import RollupState
from analytics.services import hourly_stats_backfill, hourly_stats_refresh
from analytics.tests.conftest import _call, _turns, answer, caller
from calls.models import Call, Turn
from calls.services import call_status_update

pytestmark = pytest.mark.django_db

H = timedelta(hours=1)
LATENCY = ("first_token_p50", "first_token_p90", "turn_p50", "turn_p90")


def raw(period: periods.Period) -> selectors.Split:
    """Read the whole period from the calls and turns (the exact figures)."""
    return selectors.Split(None, ((period.start, period.end),))


def assert_same_figures(rolled: dict, exact: dict) -> None:
    """Counts and sums equal; each percentile in the bucket of the exact one."""
    assert {k: v for k, v in rolled.items() if k not in LATENCY} == {
        k: v for k, v in exact.items() if k not in LATENCY
    }
    for name in LATENCY:
        if exact[name] is None:
            assert rolled[name] is None, name
        else:
            assert histograms.bucket(rolled[name]) == histograms.bucket(exact[name]), name


def test_a_period_splits_into_rollup_hours_days_and_raw_edges():
    period = periods.Period(
        key="custom",
        label="",
        start=datetime(2026, 3, 1, 10, 17, tzinfo=UTC),
        end=datetime(2026, 3, 4, 15, 42, tzinfo=UTC),
        tz=UTC,
    )
    coverage = (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 4, 14, tzinfo=UTC))
    split = selectors.split_period(period, coverage)
    assert split.rollup == (
        datetime(2026, 3, 1, 11, tzinfo=UTC),
        datetime(2026, 3, 4, 14, tzinfo=UTC),
    )
    assert split.raw == (
        (period.start, datetime(2026, 3, 1, 11, tzinfo=UTC)),
        (datetime(2026, 3, 4, 14, tzinfo=UTC), period.end),  # newer than the rollups
    )
    assert split.days == (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))
    assert split.hours == (
        (datetime(2026, 3, 1, 11, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        (datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 4, 14, tzinfo=UTC)),
    )
    # Rollups that start later than the period leave its beginning to the raw rows.
    late = (datetime(2026, 3, 3, 5, tzinfo=UTC), datetime(2026, 3, 4, 14, tzinfo=UTC))
    assert selectors.split_period(period, late).raw[0] == (period.start, late[0])
    # Within one hour, or without rollups, everything is raw.
    short = periods.Period("custom", "", period.start, period.start + timedelta(minutes=40), UTC)
    assert selectors.split_period(short, coverage).rollup is None
    assert selectors.split_period(period, None) == raw(period)


def test_figures_from_rollups_equal_figures_from_raw_rows(book, rolled_up, tenant_a, tenant_b):
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        for tenant_ids in ([tenant_a.id], [tenant_b.id], None):
            split = selectors.split_period(period, selectors.rollup_coverage())
            assert split.rollup is not None and split.days is not None
            rolled = selectors.figures(tenant_ids=tenant_ids, period=period)
            exact = selectors.figures(tenant_ids=tenant_ids, period=period, split=raw(period))
            assert_same_figures(rolled, exact)
    assert rolled["calls"] == 6 and rolled["turns"] == 12  # staff: tenant B's call is in


def test_the_hand_computed_figures_hold_with_rollups(book, rolled_up, tenant_a):
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        figures = selectors.figures(tenant_ids=[tenant_a.id], period=period)
    assert (figures["calls"], figures["answered"], figures["rejected"], figures["failed"]) == (
        5,
        3,
        1,
        1,
    )
    assert (figures["total_duration"], figures["avg_duration"], figures["turns"]) == (180, 60.0, 10)
    assert (figures["fallback_rate"], figures["error_rate"], figures["tokens"]) == (0.2, 0.2, 150)
    # Of 100, 200, 300 and of 30, 50, 400, 600, 900 ms: the middle of the ~5 % buckets of
    # 200 ms ([195, 205)) and 900 ms ([882, 926)).
    assert (figures["first_token_p50"], figures["turn_p90"]) == (199, 903)


def test_breakdown_and_charts_from_rollups_equal_raw_ones(book, rolled_up, tenant_a):
    period = periods.period_for("7d", now=book.now)
    for tenant_ids in ([tenant_a.id], None):
        with scopes_disabled():
            rolled = selectors.assistant_breakdown(tenant_ids=tenant_ids, period=period)
            exact = selectors.assistant_breakdown(
                tenant_ids=tenant_ids, period=period, split=raw(period)
            )
            rolled_charts = selectors.charts(tenant_ids=tenant_ids, period=period)
            exact_charts = selectors.charts(tenant_ids=tenant_ids, period=period, split=raw(period))
        assert [row["id"] for row in rolled] == [row["id"] for row in exact]
        for mine, theirs in zip(rolled, exact, strict=True):
            assert_same_figures(mine, theirs)
        assert rolled_charts["labels"] == exact_charts["labels"]
        assert rolled_charts["calls"] == exact_charts["calls"]
        for series in ("first_token_p50", "turn_p50", "turn_p90"):
            mine, theirs = rolled_charts[series], exact_charts[series]
            assert [v is None for v in mine] == [v is None for v in theirs]
            assert [histograms.bucket(v) for v in mine if v is not None] == [
                histograms.bucket(v) for v in theirs if v is not None
            ]


def test_an_arbitrary_period_matches_raw_rows(book, rolled_up, tenant_a):
    """The API's arbitrary start/end: partial hours at both ends come from the raw rows."""
    period = periods.Period(
        key="custom",
        label="",
        start=book.now - timedelta(hours=29, minutes=13),
        end=book.now - timedelta(hours=4, minutes=51),
        tz=UTC,
    )
    with scopes_disabled():
        split = selectors.split_period(period, selectors.rollup_coverage())
        assert split.rollup is not None and len(split.raw) == 2
        rolled = selectors.figures(tenant_ids=[tenant_a.id], period=period)
        exact = selectors.figures(tenant_ids=[tenant_a.id], period=period, split=raw(period))
    assert_same_figures(rolled, exact)
    assert rolled["calls"] == 3  # c2, c3 and the rejected c4; c1 started 29 h 47 min before


def test_the_dashboard_reads_rollups_but_only_of_the_viewers_tenant(
    book, rolled_up, alice, charlie, superuser, tenant_a, tenant_b
):
    alice_client, charlie_client = Client(), Client()
    alice_client.force_login(alice)
    charlie_client.force_login(charlie)
    mine = alice_client.get("/dashboard/figures/?period=7d").json()
    assert mine["period"]["rollup"] is not None
    assert (mine["figures"]["calls"], mine["figures"]["tokens"]) == (5, 150)
    assert sum(mine["charts"]["calls"]) == 5
    assert mine["figures"]["turn_p90"] == 903  # tenant B's 5000 ms turn is not in A's figures
    assert {a["tenant"] for a in mine["assistants"]} == {"Acme Plumbing"}
    # Charlie (tenant B) sees B only, and cannot ask for A.
    theirs = charlie_client.get("/dashboard/figures/?period=7d").json()
    assert (theirs["figures"]["calls"], theirs["figures"]["tokens"]) == (1, 2000)
    assert [a["name"] for a in theirs["assistants"]] == ["Bravo orders"]
    assert charlie_client.get(f"/dashboard/figures/?tenant={tenant_a.id}").status_code == 404
    assert alice_client.get(f"/dashboard/?tenant={tenant_b.id}").status_code == 404
    # Staff see both, from the all-tenant rows too.
    staff = Client()
    staff.force_login(superuser)
    everything = staff.get("/dashboard/figures/?period=7d").json()
    assert (everything["figures"]["calls"], sum(everything["charts"]["calls"])) == (6, 6)


def test_switched_off_or_outdated_rollups_are_not_read(book, rolled_up, settings):
    assert selectors.rollup_coverage() is not None
    settings.ANALYTICS_ROLLUP_SECONDS = 0
    assert selectors.rollup_coverage() is None
    settings.ANALYTICS_ROLLUP_SECONDS = 60
    RollupState.objects.update(version=0)  # rows of another ROLLUP_VERSION
    assert selectors.rollup_coverage() is None
    hourly_stats_refresh(now=book.now)  # throws them away and starts again
    assert selectors.rollup_coverage() is not None
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        assert selectors.figures(tenant_ids=None, period=period)["calls"] == 6


def test_figures_follow_a_call_that_ends_hours_after_it_started(book, tenant_a, assistant_a):
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
    with scope(tenant=[tenant_a.id]):
        call_status_update(
            call=long_call,
            status=Call.Status.FAILED,
            sequence=None,
            duration=600,
            timestamp=now - 3 * H + timedelta(minutes=10),
        )
        Turn.objects.create(
            tenant=tenant_a,
            call=book.calls["c5"],
            sequence=3,
            role=Turn.Role.ASSISTANT,
            created_at=now + timedelta(minutes=1),
            response_sent_ms=4000,
        )
    later = now + 2 * H
    hourly_stats_refresh(now=later)
    period = periods.period_for("7d", now=later)
    with scopes_disabled():
        assert selectors.split_period(period, selectors.rollup_coverage()).rollup is not None
        rolled = selectors.figures(tenant_ids=[tenant_a.id], period=period)
        exact = selectors.figures(tenant_ids=[tenant_a.id], period=period, split=raw(period))
    assert_same_figures(rolled, exact)
    assert rolled["failed"] == 2 and rolled["total_duration"] == 780 and rolled["turns"] == 13


def test_a_report_reads_figures_and_breakdown_from_the_same_rollup_rows(book, tenant_a):
    with scopes_disabled():  # a call to an unknown number: no tenant, no assistant
        _call(
            None,
            None,
            "CAUNKNOWN",
            book.now - 6 * H,
            status=Call.Status.REJECTED,
            answered_at=None,
            duration_seconds=0,
            outcome=Call.Outcome.REJECTED_UNKNOWN_NUMBER,
        )
    hourly_stats_backfill(since=None, now=book.now)
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        for tenant_ids in ([tenant_a.id], None):
            report = selectors.report(tenant_ids=tenant_ids, period=period)
            assert report["period"]["rollup"] is not None
            assert report["figures"] == selectors.figures(tenant_ids=tenant_ids, period=period)
            assert report["assistants"] == selectors.assistant_breakdown(
                tenant_ids=tenant_ids, period=period
            )
            exact = selectors.figures(tenant_ids=tenant_ids, period=period, split=raw(period))
            assert_same_figures(report["figures"], exact)
    assert (report["figures"]["calls"], report["figures"]["rejected"]) == (7, 2)  # staff
