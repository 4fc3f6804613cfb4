"""A fixture of calls and turns whose figures are computed by hand in the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call, Turn


@pytest.fixture(autouse=True)
def _fresh_figures(settings):
    """Figures computed afresh in each test (test_views checks the cache on its own)."""
    settings.ANALYTICS_CACHE_SECONDS = 0


@dataclass
class Book:
    now: datetime
    calls: dict[str, Call] = field(default_factory=dict)
    assistant_a2: AssistantConfig | None = None


def _call(tenant, assistant, sid: str, started: datetime, **fields) -> Call:
    defaults = {
        "status": Call.Status.COMPLETED,
        "answered_at": started,
        "from_number": "+15551230123",
        "to_number": "+14155550100",
        "config_snapshot": assistant.snapshot() if assistant else {},
    }
    return Call.objects.create(
        tenant=tenant,
        assistant=assistant,
        call_sid=sid,
        started_at=started,
        **{**defaults, **fields},
    )


def _turns(call: Call, rows: list[dict]) -> None:
    for sequence, row in enumerate(rows, start=1):
        Turn.objects.create(
            tenant_id=call.tenant_id,
            call=call,
            sequence=sequence,
            created_at=call.started_at + timedelta(seconds=sequence),
            **row,
        )


def caller(text: str = "hello") -> dict:
    return {"role": Turn.Role.CALLER, "text": text}


def answer(**fields) -> dict:
    return {"role": Turn.Role.ASSISTANT, "text": "answer", **fields}


@pytest.fixture
def book(tenant_a, tenant_b, assistant_a, assistant_b) -> Book:
    """Tenant A, last 7 days: five calls (two completed, one failed, one rejected, one live)
    over two assistants, ten turns; plus an old call of A and a call of B that must not count."""
    now = timezone.now()
    with scopes_disabled():
        a2 = AssistantConfig.objects.create(
            tenant=tenant_a,
            name="Acme night line",
            system_prompt="Night.",
            greeting="Acme, good evening.",
            tts_engine=AssistantConfig.TTSEngine.SAY,
        )
        b = Book(now=now, assistant_a2=a2)
        h = timedelta(hours=1)
        c1 = _call(tenant_a, assistant_a, "CA1", now - 30 * h, duration_seconds=60)
        c2 = _call(tenant_a, a2, "CA2", now - 20 * h, duration_seconds=120)
        c3 = _call(
            tenant_a,
            assistant_a,
            "CA3",
            now - 10 * h,
            status=Call.Status.FAILED,
            answered_at=None,
            duration_seconds=0,
            outcome=Call.Outcome.FAILED,
        )
        c4 = _call(
            tenant_a,
            assistant_a,
            "CA4",
            now - 5 * h,
            status=Call.Status.REJECTED,
            answered_at=None,
            duration_seconds=0,
            outcome=Call.Outcome.REJECTED_RATE_LIMIT,
        )
        c5 = _call(
            tenant_a,
            assistant_a,
            "CA5",
            now - timedelta(minutes=5),
            status=Call.Status.IN_PROGRESS,
            duration_seconds=None,
            from_number="+15559870042",
        )
        old = _call(tenant_a, assistant_a, "CAOLD", now - timedelta(days=10), duration_seconds=999)
        cb = _call(tenant_b, assistant_b, "CAB", now - 2 * h, duration_seconds=500)
        _turns(
            c1,
            [
                caller(),
                answer(
                    llm_first_token_ms=100,
                    llm_done_ms=300,
                    first_audio_ms=350,
                    response_sent_ms=400,
                    tokens_in=50,
                    tokens_out=10,
                    source="llm",
                    model_used="llama-3.3-70b-versatile",
                    audio_urls=["/media/speech/a.mp3"],
                ),
                caller("what are your opening hours"),
                answer(response_sent_ms=50, source="faq"),
            ],
        )
        _turns(
            c2,
            [
                caller(),
                answer(
                    llm_first_token_ms=300,
                    response_sent_ms=900,
                    tokens_in=40,
                    tokens_out=20,
                    fallbacks=["llama-3.1-8b-instant"],
                    source="llm",
                ),
                caller(),
                answer(response_sent_ms=30, cache_hit=True, source="cache"),
            ],
        )
        _turns(
            c5,
            [
                caller("is anyone there"),
                answer(
                    llm_first_token_ms=200,
                    response_sent_ms=600,
                    tokens_in=30,
                    tokens_out=0,
                    error="LLM timeout",
                    source="apology",
                ),
            ],
        )
        _turns(old, [caller(), answer(llm_first_token_ms=99999, response_sent_ms=99999)])
        _turns(
            cb,
            [
                caller(),
                answer(
                    llm_first_token_ms=5000, response_sent_ms=5000, tokens_in=1000, tokens_out=1000
                ),
            ],
        )
    b.calls = {"c1": c1, "c2": c2, "c3": c3, "c4": c4, "c5": c5, "old": old, "b": cb}
    return b


@pytest.fixture
def rolled_up(book):
    """The book's calls and turns rolled up, up to the hour before `book.now`."""
    from analytics.services import floor_hour, hourly_stats_backfill

    run = hourly_stats_backfill(since=None, now=book.now)
    assert run.covered_until == floor_hour(book.now)
    return run
