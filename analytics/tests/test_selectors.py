from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django_scopes import scopes_disabled

from analytics import periods, selectors
from calls.models import Call, Turn
from tenants.models import RateLimit

pytestmark = pytest.mark.django_db


def test_figures_match_hand_computed_values(book, tenant_a):
    RateLimit.objects.create(
        tenant=tenant_a, kind=RateLimit.Kind.LLM_TOKENS_PER_DAY, limit=1000, window_seconds=86400
    )
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        figures = selectors.figures(tenant_ids=[tenant_a.id], period=period, budget_tenant=tenant_a)
    assert figures == {
        "calls": 5,
        "answered": 3,  # c1, c2 and the live c5
        "rejected": 1,
        "failed": 1,
        "total_duration": 180,  # 60 + 120 + 0; the rejected call does not count
        "avg_duration": 60.0,
        "turns": 10,
        "turns_per_call": 2.5,  # 10 turns over the 4 calls that were not rejected
        "assistant_turns": 5,
        "first_token_p50": 200,  # of 100, 200, 300 (nearest rank)
        "first_token_p90": 300,
        "turn_p50": 400,  # of 30, 50, 400, 600, 900
        "turn_p90": 900,
        "fallback_rate": 0.2,  # 1 of 5 assistant turns
        "error_rate": 0.2,
        "cache_hit_rate": 0.2,
        "tokens": 150,  # 50+10 + 40+20 + 30+0
        "token_budget": 7000,  # 1000 a day over 7 days
        "token_budget_used": 0.0214,
    }


def test_staff_figures_cover_every_tenant(book):
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        figures = selectors.figures(tenant_ids=None, period=period)
    assert figures["calls"] == 6
    assert figures["tokens"] == 2150
    assert figures["turn_p90"] == 5000  # tenant B's slow turn is in
    assert figures["token_budget"] is None


def test_an_empty_period_has_zeroes_and_no_rates(tenant_a):
    period = periods.period_for("today")
    with scopes_disabled():
        figures = selectors.figures(tenant_ids=[tenant_a.id], period=period)
    assert figures["calls"] == 0
    assert figures["turns_per_call"] is None
    assert figures["turn_p50"] is None
    assert figures["cache_hit_rate"] is None


def test_per_assistant_breakdown_compares_configs(book, tenant_a, assistant_a):
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        rows = selectors.assistant_breakdown(tenant_ids=[tenant_a.id], period=period)
    by_name = {row["name"]: row for row in rows}
    assert [row["name"] for row in rows] == ["Acme front desk", "Acme night line"]
    front = by_name["Acme front desk"]
    assert (front["calls"], front["answered"], front["failed"], front["rejected"]) == (4, 2, 1, 1)
    assert front["turns_per_call"] == 2.0  # 6 turns over 3 calls
    assert (front["first_token_p50"], front["turn_p50"], front["turn_p90"]) == (100, 400, 600)
    night = by_name["Acme night line"]
    assert (night["calls"], night["turns"], night["turns_per_call"]) == (1, 4, 4.0)
    assert (night["cache_hit_rate"], night["fallback_rate"], night["turn_p50"]) == (0.5, 0.5, 30)
    assert all(row["tenant"] == "Acme Plumbing" for row in rows)


def test_each_assistant_row_names_the_modes_its_calls_ran_in(book, tenant_a, tenant_b):
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        # The night line is switched to relay today; its calls of the week ran in gather mode.
        type(book.assistant_a2).objects.filter(pk=book.assistant_a2.pk).update(mode="relay")
        Call.objects.filter(pk=book.calls["c1"].pk).update(mode=Call.Mode.WEB)
        Call.objects.filter(pk=book.calls["old"].pk).update(mode=Call.Mode.RELAY)  # out of period
        Call.objects.filter(pk=book.calls["b"].pk).update(mode=Call.Mode.RELAY)  # tenant B
        rows = selectors.assistant_breakdown(tenant_ids=[tenant_a.id], period=period)
        everyone = selectors.report(tenant_ids=None, period=period)["assistants"]
    modes = {row["name"]: row["modes"] for row in rows}
    assert modes == {"Acme front desk": ["gather", "web"], "Acme night line": ["gather"]}
    assert {row["name"]: row["modes"] for row in everyone}["Bravo orders"] == ["relay"]


def test_charts_count_calls_per_hour_and_latency(book, tenant_a):
    period = periods.period_for("7d", now=book.now)
    with scopes_disabled():
        charts = selectors.charts(tenant_ids=[tenant_a.id], period=period)
    assert len(charts["labels"]) == len(charts["calls"]) in (7 * 24, 7 * 24 + 1)
    assert sum(charts["calls"]) == 5
    # The three LLM answers were in three different hours.
    values = sorted(v for v in charts["first_token_p50"] if v is not None)
    assert values == [100, 200, 300]


def test_live_calls_are_the_active_ones_with_their_turns(book, tenant_a, tenant_b):
    with scopes_disabled():
        live = selectors.live_calls(tenant_ids=[tenant_a.id])
        none_for_b = selectors.live_calls(tenant_ids=[tenant_b.id])
        recent = selectors.recent_calls(tenant_ids=[tenant_a.id])
    assert [c.call_sid for c in live] == ["CA5"]
    assert [t.text for t in live[0].recent_turns] == ["is anyone there", "answer"]
    assert none_for_b == []
    assert [c.call_sid for c in recent] == ["CA4", "CA3", "CA2", "CA1", "CAOLD"]


def test_a_call_left_open_for_hours_is_not_live(book, tenant_a):
    with scopes_disabled():
        call = book.calls["c5"]
        call.started_at = book.now - timedelta(hours=5)
        call.save()
        assert selectors.live_calls(tenant_ids=[tenant_a.id]) == []


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550123", "••••••0123"),
        ("+44 20 7946 0958", "••••••0958"),
        ("anonymous", "••••"),
        ("+123", "••••"),
        ("", ""),
    ],
)
def test_caller_numbers_are_masked_but_the_last_digits(number, masked):
    assert selectors.mask_number(number) == masked


def test_today_starts_at_local_midnight():
    now = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    period = periods.period_for("today", now=now, tz_name="America/New_York")
    assert period.start.isoformat() == "2026-03-10T00:00:00-04:00"
    assert periods.period_for("bogus", now=now).key == "today"
    assert periods.period_for("today", now=now, tz_name="Mars/Base").start.hour == 0


def test_waterfall_lays_the_stages_side_by_side():
    turn = Turn(llm_first_token_ms=100, llm_done_ms=300, first_audio_ms=350, response_sent_ms=400)
    assert selectors.turn_waterfall(turn) == [
        {"stage": "LLM first token", "start": 0, "end": 100},
        {"stage": "LLM done", "start": 100, "end": 300},
        {"stage": "First audio ready", "start": 300, "end": 350},
        {"stage": "Response sent", "start": 350, "end": 400},
    ]
    assert selectors.turn_waterfall(Turn()) == []
