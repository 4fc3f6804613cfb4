"""Replays of recorded calls against a draft: changed and unchanged turns, a tool call answered
from the record, the report, the budget cap, and a real Celery worker running the lanes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django_scopes import scopes_disabled

from assistants.services import assistant_update
from calls.models import Call
from devtools.testing import fake_groq_env, start_test_worker, stop_celery_worker, tasks_queued_to
from rehearsals import replay
from rehearsals.models import ReplayCall, ReplayRun
from rehearsals.services import replay_begin
from rehearsals.stage import NOT_REPLAYED
from rehearsals.tests.conftest import BOILER, BOOKING, RECORDED_BOILER_ANSWER, record_call
from tools.models import HttpTool

pytestmark = pytest.mark.django_db

NEW_ANSWER = "A plumber can come on Monday, free of charge."


def _run(assistant, **options) -> ReplayRun:
    """Start a replay and run its lane here (the worker's code, in this process)."""
    with scopes_disabled():
        run = replay.replay_start(
            assistant=assistant,
            version=options.pop("version", None),
            selection=options.pop("selection", replay.Selection()),
            **options,
        )
        replay.replay_lane_run(run=run)
        run.refresh_from_db()
        return run


def _items(run) -> list[ReplayCall]:
    with scopes_disabled():
        return list(ReplayCall.objects.filter(run=run).order_by("position"))


def test_a_replay_shows_changed_and_unchanged_turns_and_replays_the_tool_from_the_record(
    assistant_a, recorded_a, fake_groq, tool_server
):
    with scopes_disabled():
        assistant_update(assistant=assistant_a, system_prompt="Be brief. Offer Monday.")
    fake_groq.queue_answer(NEW_ANSWER)

    run = _run(assistant_a)

    [item] = _items(run)
    boiler, hours, booking = item.turns
    assert (run.status, run.candidate_label, item.status) == ("done", "draft", "done")
    assert boiler["caller"] == BOILER
    assert boiler["original"]["text"] == RECORDED_BOILER_ANSWER
    assert boiler["candidate"]["text"] == NEW_ANSWER
    assert boiler["changed"] is True
    assert ["delete", "tomorrow morning."] in boiler["diff"]
    assert ["insert", "on Monday, free of charge."] in boiler["diff"]
    assert boiler["candidate"]["tokens_in"] > 0 and boiler["candidate"]["ms"] is not None
    assert float(boiler["candidate"]["cost"]) > 0
    assert hours["changed"] is False and hours["candidate"]["source"] == "faq"
    assert booking["changed"] is False
    assert booking["candidate"]["tools"][0]["name"] == "book_appointment"
    assert booking["candidate"]["text"] == "Booked: cleaning on tuesday, reference AB12."
    assert len(tool_server.received("/book")) == 1  # answered from the record, not run again
    # The draft's prompt was the one the model got.
    assert fake_groq.requests[0].messages[0]["content"] == "Be brief. Offer Monday."
    report = run.report
    assert (report["turns"], report["turns_changed"]) == (3, 1)
    assert report["calls"]["done"] == 1
    assert report["latency_ms"]["candidate"]["p50"] is not None
    assert report["latency_ms"]["original"]["p90"] is not None
    assert float(report["cost"]["original"]) > 0 and float(report["cost"]["candidate"]) > 0
    assert run.message == "1 of 3 turns answered differently."


def test_a_replay_neither_stores_calls_nor_takes_lines(assistant_a, recorded_a, fake_groq):
    with scopes_disabled():
        calls_before = Call.objects.count()
        turns_before = recorded_a.turns.count()

    _run(assistant_a)

    with scopes_disabled():
        assert Call.objects.count() == calls_before
        assert recorded_a.turns.count() == turns_before


def test_a_changed_tool_is_not_run_in_a_replay(assistant_a, recorded_a, fake_groq, tool_server):
    with scopes_disabled():
        HttpTool.objects.filter(name="book_appointment", assistant=assistant_a).update(
            url=tool_server.url("/book-v2")
        )

    run = _run(assistant_a)

    booking = _items(run)[0].turns[2]
    assert booking["candidate"]["tools"][0]["status"] == NOT_REPLAYED
    assert booking["changed"] is True
    assert tool_server.received("/book-v2") == [] and len(tool_server.received("/book")) == 1


def test_the_budget_cap_stops_a_large_replay_politely(
    twilio, number_a, assistant_a, published_a, fake_groq
):
    for n in range(4):
        record_call(twilio, number_a, f"Question number {n} about my boiler?", "And the price?")

    run = _run(assistant_a, budget_tokens=1)

    items = _items(run)
    assert run.status == "budget_reached"
    assert "budget of 1 tokens was spent" in run.message
    assert [i.status for i in items] == ["stopped", "skipped", "skipped", "skipped"]
    assert len(items[0].turns) == 1  # stopped after the first turn spent the budget
    assert run.report["calls"]["skipped"] == 3


def test_the_selection_picks_calls_by_outcome_and_id(
    twilio, number_a, assistant_a, published_a, fake_groq
):
    first = record_call(twilio, number_a, BOILER)
    second = record_call(twilio, number_a, BOOKING)
    with scopes_disabled():
        Call.objects.filter(pk=first.pk).update(outcome=Call.Outcome.TRANSFERRED)
        by_outcome = replay.calls_select(
            assistant=assistant_a, selection=replay.Selection(outcome="transferred")
        )
        by_id = replay.calls_select(
            assistant=assistant_a, selection=replay.Selection(call_ids=(str(second.id),))
        )
    assert by_outcome == [first] and by_id == [second]


def test_a_tenant_replays_only_its_own_calls(
    twilio, number_a, number_b, assistant_a, assistant_b, published_a, fake_groq
):
    theirs = record_call(twilio, number_b, BOILER)
    with scopes_disabled(), pytest.raises(replay.NothingToReplay):
        replay.replay_start(
            assistant=assistant_a,
            version=None,
            selection=replay.Selection(call_ids=(str(theirs.id),)),
        )


# --- a real worker ---------------------------------------------------------------------------


@pytest.fixture
def worker(transactional_db, fake_groq, media_root: Path, tmp_path: Path) -> Iterator:
    started = start_test_worker(
        log_path=tmp_path / "worker.log", media_root=media_root, extra_env=fake_groq_env(fake_groq)
    )
    with tasks_queued_to(started.queue):
        yield started
    stop_celery_worker(started)


@pytest.mark.django_db(transaction=True)
def test_a_worker_replays_calls_in_parallel_lanes(
    twilio, number_a, assistant_a, published_a, fake_groq, worker
):
    for n in range(5):
        record_call(twilio, number_a, f"Question {n} about my boiler?")
    with scopes_disabled():
        run = replay_begin(
            assistant=assistant_a, version=published_a, selection=replay.Selection(), concurrency=3
        )
    deadline = time.monotonic() + 60
    while True:
        with scopes_disabled():
            run.refresh_from_db()
        if run.status in ReplayRun.FINAL:
            break
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.1)
    assert run.status == "done", worker.log()
    assert run.report["calls"]["done"] == 5 and run.report["turns"] == 5
    # The fake model answers the same words the same way: the published version is unchanged.
    assert run.report["turns_changed"] == 0
    assert run.candidate_label == "v1"


def test_the_command_starts_a_replay_and_refuses_a_bad_version(
    assistant_a, recorded_a, fake_groq, capsys
):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="No version '9'"):
        call_command("replay_calls", assistant=str(assistant_a.id), version="9")
    with pytest.raises(CommandError, match="Not a call id: 'CA123'"):
        call_command("replay_calls", assistant=str(assistant_a.id), call=["CA123"])
    with pytest.raises(CommandError, match="Not a date"):
        call_command("replay_calls", assistant=str(assistant_a.id), since="last week")

    call_command(
        "replay_calls", assistant="Acme front desk", version="published", since="2020-01-01"
    )

    out = capsys.readouterr().out
    with scopes_disabled():
        run = ReplayRun.objects.get()
    assert f"Replay {run.id}: 1 calls on v1" in out
    assert run.selection["since"].startswith("2020-01-01")


def test_a_call_of_a_lost_lane_is_replayed_by_a_new_one(assistant_a, recorded_a, fake_groq):
    from datetime import timedelta

    from django.utils import timezone

    with scopes_disabled():
        run = replay.replay_start(assistant=assistant_a, version=None, selection=replay.Selection())
        # A lane took the call, then its worker died.
        ReplayCall.objects.filter(run=run).update(
            status=ReplayCall.Status.RUNNING, touched_at=timezone.now() - timedelta(hours=1)
        )
        ReplayRun.objects.filter(pk=run.pk).update(status=ReplayRun.Status.RUNNING)
        assert replay.replays_revive(quiet_for=timedelta(minutes=30)) == [run]
        assert replay.replays_revive(quiet_for=timedelta(minutes=30)) == []
        replay.replay_lane_run(run=run)
        run.refresh_from_db()
    assert run.status == "done" and run.report["turns"] == 3


def test_the_dashboards_hear_nothing_of_a_replay(assistant_a, recorded_a, fake_groq, tenant_a):
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from calls.events import tenant_group, unbatch

    layer = get_channel_layer()

    async def listen():
        channel = await layer.new_channel()
        await layer.group_add(tenant_group(tenant_a.id), channel)
        return channel

    async def heard(channel) -> list:
        events = []
        while True:
            try:
                events += unbatch(await asyncio.wait_for(layer.receive(channel), 1))
            except TimeoutError:
                return events

    channel = async_to_sync(listen)()
    _run(assistant_a)
    # The recorded call's own events may still be on their way (they are sent in batches).
    assert [e for e in async_to_sync(heard)(channel) if e["call"] != str(recorded_a.id)] == []
