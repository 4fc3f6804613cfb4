from __future__ import annotations

from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from analytics.selectors import (
    Period,
    assistant_breakdown,
    figures,
    rollup_coverage,
    split_period,
)
from calls.models import Call, Turn
from tenants.models import RateLimit

pytestmark = pytest.mark.django_db

URL = "/api/v1/calls/"
T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


def make_call(
    tenant,
    number,
    assistant,
    *,
    sid,
    minutes=0,
    status="completed",
    caller="+15550001111",
    duration=60,
    answered=True,
    outcome="completed",
    turns=(),
):
    with scopes_disabled():
        call = Call.objects.create(
            tenant=tenant,
            phone_number=number,
            assistant=assistant,
            call_sid=sid,
            from_number=caller,
            to_number=number.number if number else "",
            status=status,
            started_at=T0 + timedelta(minutes=minutes),
            answered_at=T0 + timedelta(minutes=minutes) if answered else None,
            duration_seconds=duration,
            outcome=outcome,
            config_snapshot=assistant.snapshot() if assistant else {},
        )
        for i, extra in enumerate(turns):
            Turn.objects.create(
                tenant=tenant,
                call=call,
                sequence=i,
                created_at=call.started_at,
                role=Turn.Role.ASSISTANT if i % 2 else Turn.Role.CALLER,
                text=f"turn {i}",
                **extra,
            )
    return call


@pytest.fixture
def calls_a(tenant_a, number_a, assistant_a):
    reply = dict(
        llm_first_token_ms=300,
        response_sent_ms=900,
        tokens_in=50,
        tokens_out=20,
        audio_urls=["https://voice.example.com/media/speech/a.mp3"],
    )
    first = make_call(
        tenant_a,
        number_a,
        assistant_a,
        sid="CA1",
        minutes=0,
        turns=[
            {},
            reply,
            {},
            {
                **reply,
                "cache_hit": True,
                "llm_first_token_ms": 100,
                "response_sent_ms": 500,
                "audio_urls": [],
            },
        ],
    )
    second = make_call(
        tenant_a,
        number_a,
        assistant_a,
        sid="CA2",
        minutes=10,
        caller="+15550002222",
        status="failed",
        outcome="error",
        answered=False,
        duration=None,
        turns=[{}, {"error": "llm: timeout", "fallbacks": ["llm:fallback"]}],
    )
    third = make_call(
        tenant_a,
        None,
        None,
        sid="CA3",
        minutes=20,
        status="rejected",
        outcome="rejected_rate_limit",
        answered=False,
        duration=None,
    )
    return first, second, third


@pytest.fixture
def call_b(tenant_b, number_b, assistant_b):
    return make_call(tenant_b, number_b, assistant_b, sid="CB1", turns=[{}, {}])


def ids(response) -> list[str]:
    return [c["call_sid"] for c in response.json()["results"]]


def test_the_owner_lists_calls_newest_first(api, alice, calls_a, call_b):
    response = api(alice).get(URL)
    assert response.status_code == 200
    assert ids(response) == ["CA3", "CA2", "CA1"]
    assert response.json()["results"][2]["turn_count"] == 4


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failed"}, ["CA2"]),
        ({"status": ["failed", "completed"]}, ["CA2", "CA1"]),
        ({"caller": "+1 555 000 2222"}, ["CA2"]),
        ({"number": "+14155550100"}, ["CA2", "CA1"]),
        ({"started_after": (T0 + timedelta(minutes=5)).isoformat()}, ["CA3", "CA2"]),
        ({"started_before": (T0 + timedelta(minutes=5)).isoformat()}, ["CA1"]),
    ],
)
def test_calls_are_filtered(api, alice, calls_a, query, expected):
    assert ids(api(alice).get(URL, query)) == expected


def test_calls_filter_by_assistant_and_number_id(api, alice, calls_a, assistant_a, number_a):
    assert ids(api(alice).get(URL, {"assistant": str(assistant_a.id)})) == ["CA2", "CA1"]
    assert ids(api(alice).get(URL, {"phone_number": str(number_a.id)})) == ["CA2", "CA1"]


@pytest.mark.parametrize(
    "query",
    [{"status": "exploded"}, {"started_after": "yesterday-ish"}, {"assistant": "nope"}],
)
def test_bad_filters_get_400(api, alice, calls_a, query):
    response = api(alice).get(URL, query)
    assert response.status_code == 400
    assert set(query) <= set(response.json())


def test_calls_are_cursor_paginated(api, alice, calls_a):
    client = api(alice)
    page = client.get(URL, {"page_size": 2}).json()
    assert [c["call_sid"] for c in page["results"]] == ["CA3", "CA2"]
    assert page["previous"] is None
    page2 = client.get(page["next"]).json()
    assert [c["call_sid"] for c in page2["results"]] == ["CA1"]
    assert page2["next"] is None
    assert client.get(URL, {"cursor": "garbage"}).status_code == 404


def test_a_call_is_read_with_its_turns(api, alice, calls_a, assistant_a):
    first = calls_a[0]
    body = api(alice).get(f"{URL}{first.id}/").json()
    assert body["call_sid"] == "CA1"
    assert [t["sequence"] for t in body["turns"]] == [0, 1, 2, 3]
    assert body["turns"][1]["llm_first_token_ms"] == 300
    assert body["config_snapshot"]["name"] == assistant_a.name


def test_the_audio_urls_of_the_assistant_turns(api, alice, calls_a):
    body = api(alice).get(f"{URL}{calls_a[0].id}/audio/").json()
    assert body == [
        {
            "turn": body[0]["turn"],
            "sequence": 1,
            "text": "turn 1",
            "audio_urls": ["https://voice.example.com/media/speech/a.mp3"],
        },
        {"turn": body[1]["turn"], "sequence": 3, "text": "turn 3", "audio_urls": []},
    ]


def test_the_viewer_reads_calls_and_cannot_write(api, bob, calls_a):
    client = api(bob)
    assert client.get(f"{URL}{calls_a[0].id}/").status_code == 200
    assert client.get(f"{URL}{calls_a[0].id}/audio/").status_code == 200
    assert client.post(URL, {}, format="json").status_code == 403
    assert client.delete(f"{URL}{calls_a[0].id}/").status_code == 403


def test_calls_are_read_only_for_writers_too(api, alice, calls_a):
    assert api(alice).post(URL, {}, format="json").status_code == 405
    assert api(alice).delete(f"{URL}{calls_a[0].id}/").status_code == 405


def test_the_outsider_gets_404_on_another_tenants_calls(api, charlie, calls_a, call_b, assistant_a):
    client = api(charlie)
    assert ids(client.get(URL)) == ["CB1"]
    assert ids(client.get(URL, {"assistant": str(assistant_a.id)})) == []
    assert client.get(f"{URL}{calls_a[0].id}/").status_code == 404
    assert client.get(f"{URL}{calls_a[0].id}/audio/").status_code == 404


# --- analytics ------------------------------------------------------------------------------

ANALYTICS = "/api/v1/analytics/"


def period(**extra):
    return {
        "start": (T0 - timedelta(hours=1)).isoformat(),
        "end": (T0 + timedelta(hours=1)).isoformat(),
        **extra,
    }


def test_the_figures_of_a_period(api, bob, calls_a, call_b, assistant_a, tenant_a):
    RateLimit.objects.update_or_create(
        tenant=tenant_a,
        kind=RateLimit.Kind.LLM_TOKENS_PER_DAY,
        defaults={"limit": 1000, "window_seconds": 86400},
    )
    body = api(bob).get(ANALYTICS, period()).json()
    totals = body["tenant"]
    assert totals["calls"] == 3
    assert totals["answered"] == 1
    assert totals["rejected"] == 1
    assert totals["failed"] == 1
    assert totals["total_duration_seconds"] == 60
    assert totals["avg_duration_seconds"] == 60.0
    assert totals["turns"] == 6
    assert totals["turns_per_call"] == 3.0  # per call not rejected
    assert totals["assistant_replies"] == 3
    assert totals["llm_first_token_ms_p50"] == 100  # of 100 and 300 (nearest rank)
    assert totals["llm_first_token_ms_p90"] == 300
    assert totals["response_sent_ms_p90"] == 900  # of 500 and 900
    assert totals["cache_hit_rate"] == round(1 / 3, 4)
    assert totals["error_rate"] == round(1 / 3, 4)
    assert totals["fallback_rate"] == round(1 / 3, 4)
    assert totals["tokens_used"] == 140
    assert totals["token_budget"] == 1000
    assert totals["token_budget_used"] == 0.14
    [row] = body["assistants"]
    assert row["assistant"] == str(assistant_a.id)
    assert row["calls"] == 2


def test_the_api_gives_the_dashboards_figures_also_from_rollups(
    api, bob, calls_a, call_b, tenant_a, assistant_a
):
    """Whole hours come from the hourly rollups, as on the dashboard; the figures are the
    dashboard's, under the API's names."""
    call_command("rollup_analytics", "--all", stdout=StringIO())
    start = T0.replace(minute=0, second=0)  # the rollups begin at the oldest call's hour
    end = start + timedelta(hours=5)
    body = api(bob).get(ANALYTICS, {"start": start.isoformat(), "end": end.isoformat()}).json()
    period = Period(key="custom", label="", start=start, end=end, tz=UTC)
    assert split_period(period, rollup_coverage()).rollup == (start, end)  # all from rollups
    with scope(tenant=[tenant_a.id]):
        dashboard = figures(tenant_ids=[tenant_a.id], period=period, budget_tenant=tenant_a)
        [dashboard_row] = assistant_breakdown(tenant_ids=[tenant_a.id], period=period)
    names = {
        "total_duration_seconds": "total_duration",
        "avg_duration_seconds": "avg_duration",
        "assistant_replies": "assistant_turns",
        "llm_first_token_ms_p50": "first_token_p50",
        "llm_first_token_ms_p90": "first_token_p90",
        "response_sent_ms_p50": "turn_p50",
        "response_sent_ms_p90": "turn_p90",
        "tokens_used": "tokens",
    }
    for field, value in body["tenant"].items():
        assert value == dashboard[names.get(field, field)], field
    [row] = body["assistants"]
    assert row["assistant"] == dashboard_row["id"] == str(assistant_a.id)
    for field, value in row.items():
        if field not in ("assistant", "name"):
            assert value == dashboard_row[names.get(field, field)], field
    assert body["tenant"]["calls"] == 3  # tenant B's call is not counted
    assert body["tenant"]["tokens_used"] == 140


def test_figures_for_one_assistant_and_an_empty_period(api, alice, calls_a, assistant_a):
    body = api(alice).get(ANALYTICS, period(assistant=str(assistant_a.id))).json()
    assert [r["name"] for r in body["assistants"]] == ["Acme front desk"]
    empty = api(alice).get(ANALYTICS, {"end": (T0 - timedelta(days=30)).isoformat()}).json()
    assert empty["tenant"]["calls"] == 0
    assert empty["tenant"]["turns_per_call"] is None
    assert empty["tenant"]["llm_first_token_ms_p50"] is None


@pytest.mark.parametrize(
    "query",
    [
        {"start": "not a date"},
        {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"assistant": "nope"},
    ],
)
def test_bad_periods_get_400(api, alice, query):
    response = api(alice).get(ANALYTICS, query)
    assert response.status_code == 400
    assert set(response.json()) & {"start", "end", "assistant"}


def test_the_outsider_sees_only_their_own_figures(api, charlie, calls_a, call_b, assistant_a):
    body = api(charlie).get(ANALYTICS, period()).json()
    assert body["tenant"]["calls"] == 1
    assert [r["name"] for r in body["assistants"]] == ["Bravo orders"]
    # Asking for another tenant's assistant shows nothing of it.
    body = api(charlie).get(ANALYTICS, period(assistant=str(assistant_a.id))).json()
    assert body["assistants"] == []
    assert body["tenant"]["calls"] == 1


@pytest.mark.parametrize(
    "value",
    ["1510-02-19T04:29:51+23:45", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:00"],
)
def test_dates_with_any_utc_offset_are_answered_not_500(api, key_a, calls_a, value):
    # ISO 8601 and Python allow offsets up to ±23:59; PostgreSQL refuses those beyond ±15:59.
    client = api(key=key_a)
    response = client.get(URL, {"started_before": value})
    assert response.status_code == 200, response.content
    response = client.get("/api/v1/analytics/", {"end": value})
    assert response.status_code in (200, 400), response.content
