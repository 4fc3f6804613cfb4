"""Admission control: a server process past its load thresholds refuses new calls politely in
every mode, records them, and tells the load balancer; calls in progress go on."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client
from django_scopes import scopes_disabled
from prometheus_client import REGISTRY

from assistants.models import AssistantConfig
from assistants.versions import version_publish
from calls.models import Call
from config.asgi import application
from core import load

BUSY = "all of our lines are busy"


@pytest.fixture
def one_session_per_process(settings, monkeypatch):
    # A process of its own: sockets other tests left open in this test process do not count.
    monkeypatch.setattr(load, "process_load", load.ProcessLoad())
    settings.LOAD_MAX_SESSIONS = 1
    settings.LOAD_MAX_LOOP_LAG_MS = 0
    settings.LOAD_MAX_DB_WAIT_MS = 0


def _call(call_sid: str) -> Call:
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


def _refused(mode: str) -> float:
    value = REGISTRY.get_sample_value("voice_calls_refused_overloaded_total", {"mode": mode})
    return value or 0.0


def _set_mode(assistant: AssistantConfig, mode: str) -> None:
    with scopes_disabled():
        assistant.mode = mode
        assistant.save()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("assistant_mode", "call_mode"),
    [
        (AssistantConfig.Mode.GATHER, Call.Mode.GATHER),
        (AssistantConfig.Mode.RELAY, Call.Mode.RELAY),
        (AssistantConfig.Mode.STREAM, Call.Mode.STREAM),
    ],
)
def test_a_process_at_capacity_says_the_lines_are_busy_and_hangs_up(
    twilio, number_a, assistant_a, one_session_per_process, assistant_mode, call_mode
):
    _set_mode(assistant_a, assistant_mode)
    refused_before = _refused(call_mode)
    with load.process_load.session_held():
        call_sid, response = twilio.voice(number_a.number)
    assert response.status == 200
    assert BUSY in response.said
    assert response.has("Hangup")
    # Relay and stream: refused before any socket is opened.
    assert not response.has("Connect") and not response.has("Gather")
    call = _call(call_sid)
    assert (call.status, call.outcome, call.mode) == (
        Call.Status.REJECTED,
        Call.Outcome.REJECTED_OVERLOADED,
        call_mode,
    )
    assert call.error == "overloaded (sessions)"
    assert call.tenant_id == number_a.tenant_id
    assert _refused(call_mode) == refused_before + 1


@pytest.mark.django_db
def test_a_refused_call_is_recorded_in_the_mode_of_the_version_callers_get(
    twilio, number_a, assistant_a, one_session_per_process
):
    _set_mode(assistant_a, AssistantConfig.Mode.RELAY)
    with scopes_disabled():
        version_publish(assistant=assistant_a, check=False)
    _set_mode(assistant_a, AssistantConfig.Mode.GATHER)  # a draft edit, not published
    with load.process_load.session_held():
        call_sid, response = twilio.voice(number_a.number)
    assert BUSY in response.said
    call = _call(call_sid)
    assert (call.outcome, call.mode) == (Call.Outcome.REJECTED_OVERLOADED, Call.Mode.RELAY)


@pytest.mark.django_db
def test_the_busy_line_is_said_in_the_assistants_language(
    twilio, number_a, assistant_a, one_session_per_process
):
    with scopes_disabled():
        assistant_a.language = "es-ES"
        assistant_a.save()
    with load.process_load.session_held():
        _, response = twilio.voice(number_a.number)
    assert "líneas" in response.said
    assert next(response.root.iter("Say")).get("language") == "es-ES"


@pytest.mark.django_db
def test_a_process_below_capacity_answers(twilio, number_a, one_session_per_process):
    call_sid, response = twilio.voice(number_a.number)
    assert response.has("Gather")
    assert _call(call_sid).status == Call.Status.IN_PROGRESS


@pytest.mark.django_db
def test_a_call_in_progress_goes_on_while_the_process_is_at_capacity(
    twilio, number_a, one_session_per_process, fake_groq
):
    call_sid, _ = twilio.voice(number_a.number)
    with load.process_load.session_held():
        # Twilio retrying the voice webhook of the call already answered: the same call.
        retried = twilio.voice(number_a.number, call_sid=call_sid)[1]
        answer = twilio.gather(call_sid, number_a.number, "When are you open?")
    assert retried.has("Gather")
    assert "eight to six" in " ".join(answer.texts("Say"))
    assert answer.has("Gather")
    assert _call(call_sid).status == Call.Status.IN_PROGRESS


@pytest.mark.django_db
def test_readyz_is_503_while_the_process_is_at_capacity(client: Client, one_session_per_process):
    assert client.get("/readyz").status_code == 200
    with load.process_load.session_held():
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["load"]
    assert body["checks"]["load"]["sessions"] == 1
    assert "sessions" in body["checks"]["load"]["error"]
    assert client.get("/readyz").status_code == 200  # the session ended: ready again


@pytest.mark.django_db
def test_metrics_show_the_load_and_the_refusals(client: Client, twilio, number_a, settings):
    settings.LOAD_MAX_SESSIONS = 1
    with load.process_load.session_held():
        twilio.voice(number_a.number)
        body = client.get("/metrics").content.decode()
    assert "voice_process_sessions 1.0" in body
    assert "voice_process_overloaded 1.0" in body
    assert 'voice_calls_refused_overloaded_total{mode="gather"}' in body
    assert "voice_process_loop_lag_ms" in body
    assert "voice_process_db_pool_wait_ms" in body


def test_each_threshold_refuses_on_its_own(settings):
    settings.LOAD_MAX_LOOP_LAG_MS, settings.LOAD_MAX_SESSIONS = 200, 100
    settings.LOAD_MAX_DB_WAIT_MS = 300
    assert load.Load(loop_lag_ms=250, sessions=3, db_wait_ms=0).past_thresholds() == ["loop_lag"]
    assert load.Load(loop_lag_ms=10, sessions=100, db_wait_ms=0).past_thresholds() == ["sessions"]
    assert load.Load(loop_lag_ms=10, sessions=3, db_wait_ms=400).past_thresholds() == [
        "db_pool_wait"
    ]
    assert load.Load(loop_lag_ms=199, sessions=99, db_wait_ms=299).past_thresholds() == []
    settings.LOAD_MAX_SESSIONS = 0  # switched off
    assert load.Load(loop_lag_ms=0, sessions=10_000, db_wait_ms=0).past_thresholds() == []


def test_a_lag_spike_is_held_for_a_few_samples(settings):
    settings.LOAD_MAX_LOOP_LAG_MS = 100
    process = load.ProcessLoad()
    assert process.sample(400).past_thresholds() == ["loop_lag"]
    assert process.sample(0).past_thresholds() == ["loop_lag"]  # 280 ms: still busy
    for _ in range(5):
        process.sample(0)
    assert process.current().past_thresholds() == []


# --- the browser's talk page ------------------------------------------------------------------


def _talk_socket(user, assistant) -> WebsocketCommunicator:
    client = Client()
    client.force_login(user)
    headers = [
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]
    return WebsocketCommunicator(
        application, f"/ws/assistants/{assistant.id}/talk/", headers=headers
    )


async def _frame(communicator) -> dict:
    return json.loads(await communicator.receive_from(timeout=10))


async def _answer(communicator) -> str:
    text = ""
    while True:
        frame = await _frame(communicator)
        if frame["type"] == "text":
            text += frame["token"]
            if frame["last"]:
                await _frame(communicator)  # latency
                return text


@pytest.mark.django_db(transaction=True)
def test_the_talk_page_is_refused_with_a_clear_message_while_the_conversation_in_progress_goes_on(
    alice, assistant_a, one_session_per_process, fake_groq
):
    first, second = _talk_socket(alice, assistant_a), _talk_socket(alice, assistant_a)

    async def scenario():
        assert (await first.connect())[0]
        await _frame(first)  # ready
        await first.send_to(text_data=json.dumps({"type": "prompt", "text": "When are you open?"}))
        assert "eight to six" in await _answer(first)  # the process now holds one session
        assert (await second.connect())[0]
        await _frame(second)
        await second.send_to(text_data=json.dumps({"type": "prompt", "text": "Hello?"}))
        refusal = await _frame(second)
        assert refusal["type"] == "end" and BUSY in refusal["message"]
        assert (await second.receive_output(timeout=5))["type"] == "websocket.close"
        # The conversation in progress is answered as before.
        await first.send_to(text_data=json.dumps({"type": "prompt", "text": "When are you open?"}))
        assert "eight to six" in await _answer(first)
        await first.disconnect()

    async_to_sync(scenario)()
    with scopes_disabled():
        calls = list(Call.objects.filter(mode=Call.Mode.WEB).order_by("started_at"))
    assert [c.status for c in calls] == [Call.Status.COMPLETED, Call.Status.REJECTED]
    assert calls[1].outcome == Call.Outcome.REJECTED_OVERLOADED
    assert calls[1].tenant_id == assistant_a.tenant_id
    assert load.process_load.current().sessions == 0  # given back when the socket closed


def test_the_sampler_sees_an_event_loop_held_up(settings):
    settings.LOAD_SAMPLE_SECONDS = 0.05
    settings.LOAD_MAX_LOOP_LAG_MS = 300
    process = load.ProcessLoad()

    async def scenario() -> load.Load:
        process.start_sampling()
        await asyncio.sleep(0.2)
        calm = process.current()
        time.sleep(0.5)  # work that holds the loop: every call of the process waits
        await asyncio.sleep(0.02)  # the sampler wakes up, late
        assert calm.past_thresholds() == []
        return process.current()

    held_up = asyncio.run(scenario())
    assert held_up.loop_lag_ms >= 400
    assert held_up.past_thresholds() == ["loop_lag"]
