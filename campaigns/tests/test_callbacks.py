"""The assistant's `schedule_callback` tool: on a gather call the fake Groq server asks for it
through the real SDK; the callback is stored, waits for the call to end, and a real Celery
worker's tick places it against the Twilio stand-in. Refusals, moves, cancels and tenancy."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.models import Call, Turn
from calls.tests.relay_helpers import RelayClient, relay_socket, text_of
from campaigns import callbacks, phrases, twilio_calls
from campaigns.models import DoNotCall, ScheduledCallback
from devtools.testing import (
    channels_database_env,
    database_url,
    start_celery_worker,
    stop_celery_worker,
    wait_until_ready,
)
from tenants.models import RateLimit
from tools.services import builtin_tools_set

pytestmark = pytest.mark.django_db(transaction=True)

CALLER = "+15551230000"


def _noon_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon now (inside the callback hours)."""
    offset = 12 - now.hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def callback_assistant(tenant_a, assistant_a):
    with scopes_disabled():
        tenant_a.timezone = _noon_zone(datetime.now(UTC))
        tenant_a.save()
        builtin_tools_set(assistant=assistant_a, registered=[callbacks.TOOL_NAME])
    return assistant_a


def _ask_for_callback(twilio, number, fake_groq, arguments: dict, words="Call me back later."):
    fake_groq.queue_tool_calls([{"name": callbacks.TOOL_NAME, "arguments": arguments}])
    call_sid, _ = twilio.voice(number.number)
    response = twilio.gather(call_sid, number.number, words)
    return call_sid, response


def _tool_record(call_sid: str) -> dict:
    with scopes_disabled():
        answer = Turn.objects.filter(call__call_sid=call_sid, role="assistant").last()
    [record] = answer.tool_calls
    return record


def _wait(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def callback_worker(twilio_cloud, live_server, media_root, tmp_path):
    queue = f"test-callbacks-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": queue,
        "MEDIA_ROOT": str(media_root),
        **channels_database_env(),
        "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
        "TWILIO_API_BASE_URL": twilio_cloud.base_url,
        "PUBLIC_BASE_URL": live_server.url,
        "CAMPAIGN_TICK_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    worker = start_celery_worker(
        env=env, queue=queue, log_path=tmp_path / "worker.log", beat_schedule=tmp_path / "beat"
    )
    wait_until_ready(worker)
    yield worker
    stop_celery_worker(worker)


def test_a_callback_promised_on_a_call_is_placed_by_the_worker_once_the_call_is_over(
    twilio, number_a, callback_assistant, fake_groq, twilio_cloud, callback_worker
):
    twilio.base_url = settings.PUBLIC_BASE_URL  # the platform checks signatures against it
    call_sid, response = _ask_for_callback(
        twilio, number_a, fake_groq, {"note": "the boiler quote"}, "Call me back after this."
    )

    offered = {t["function"]["name"]: t["function"] for t in fake_groq.requests[0].body["tools"]}
    assert "It is now" in offered[callbacks.TOOL_NAME]["description"]
    assert "right after this call" in response.said
    record = _tool_record(call_sid)
    assert record["status"] == "ok" and record["arguments"] == {"note": "the boiler quote"}
    with scopes_disabled():
        callback = ScheduledCallback.objects.get()
        promised_on = Call.objects.get(call_sid=call_sid)
    assert (callback.number, callback.phone_number_id) == (CALLER, number_a.id)
    assert callback.promised_on == promised_on and callback.note == "the boiler quote"
    assert callback.status == ScheduledCallback.Status.SCHEDULED

    time.sleep(2.5)  # two ticks of the worker: the caller is still on the line
    assert twilio_cloud.calls == {}

    twilio.status(call_sid, number_a.number, "completed", sequence=5, duration=30)
    _wait(lambda: len(twilio_cloud.calls) == 1, timeout=30, what=callback_worker.log()[-2000:])
    assert twilio_cloud.wait_idle(timeout=20)
    time.sleep(2.5)  # more ticks: nothing is placed twice
    [fake] = twilio_cloud.calls.values()
    assert (fake.to, fake.from_) == (CALLER, number_a.number)
    assert "Acme Plumbing, how can I help?" in fake.twiml[0]
    with scopes_disabled():
        callback.refresh_from_db()
        placed = callback.outbound.call
    assert callback.status == ScheduledCallback.Status.PLACED
    assert (placed.direction, placed.call_sid, placed.status) == ("outbound", fake.sid, "completed")


def test_a_callback_at_a_local_time_waits_for_it(
    twilio, number_a, callback_assistant, fake_groq, tenant_a, client, alice, charlie
):
    zone = callbacks._zone(tenant_a)
    later = (timezone.now() + timedelta(hours=2)).astimezone(zone)
    at = f"{later:%Y-%m-%d %H:%M}"
    call_sid, response = _ask_for_callback(twilio, number_a, fake_groq, {"at": at})
    twilio.status(call_sid, number_a.number, "completed", sequence=5, duration=30)

    with scopes_disabled():
        callback = ScheduledCallback.objects.get()
    assert callback.due_at == later.replace(second=0, microsecond=0)
    assert f"{later:%H:%M}" in response.said
    assert callbacks.callbacks_place_due() == 0  # not due yet: nothing is asked of Twilio
    with scopes_disabled():
        callback.refresh_from_db()
    assert callback.status == ScheduledCallback.Status.SCHEDULED
    page = f"/dashboard/calls/{callback.promised_on_id}/"
    client.force_login(alice)
    shown = client.get(page).content.decode()
    assert "Callback promised" in shown and f"{later:%H:%M}" in shown
    client.force_login(charlie)
    assert client.get(page).status_code == 404


def test_asking_again_moves_the_one_callback(twilio, number_a, callback_assistant, fake_groq):
    _ask_for_callback(twilio, number_a, fake_groq, {"in_minutes": 30})
    _ask_for_callback(twilio, number_a, fake_groq, {"in_minutes": 90})

    with scopes_disabled():
        [callback] = ScheduledCallback.objects.all()
    expected = timezone.now() + timedelta(minutes=90)
    assert abs((callback.due_at - expected).total_seconds()) < 60


def test_a_number_on_the_do_not_call_list_is_not_promised_a_callback(
    twilio, number_a, callback_assistant, fake_groq, tenant_a
):
    with scopes_disabled():
        DoNotCall.objects.create(tenant=tenant_a, number=CALLER)
        callback_assistant.language = "es-ES"
        callback_assistant.save()

    call_sid, _ = _ask_for_callback(twilio, number_a, fake_groq, {"in_minutes": 5})

    record = _tool_record(call_sid)
    assert record["status"] == "error"
    result = json.loads(fake_groq.requests[1].messages[-1]["content"])
    spanish = phrases.say(phrases.CALLBACK_NOT_SCHEDULED, config={"language": "es-ES"})
    assert spanish != phrases.CALLBACK_NOT_SCHEDULED  # translated
    assert result["tell_the_caller"] == spanish
    assert "not to be called" in result["error"]
    with scopes_disabled():
        assert not ScheduledCallback.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"in_minutes": 14 * 24 * 60 + 60}, "maximum"),  # the schema's maximum
        ({"at": "2001-01-01 10:00"}, "passed"),
        ({"at": "next tuesday"}, "YYYY-MM-DD HH:MM"),
    ],
)
def test_a_callback_at_an_impossible_time_is_refused(
    twilio, number_a, callback_assistant, fake_groq, arguments, reason
):
    call_sid, response = _ask_for_callback(twilio, number_a, fake_groq, arguments)

    record = _tool_record(call_sid)
    assert record["status"] in ("error", "invalid")
    assert reason in fake_groq.requests[1].messages[-1]["content"]
    assert response.status == 200 and response.said
    with scopes_disabled():
        assert not ScheduledCallback.objects.exists()


def test_a_callback_outside_the_hours_is_refused_with_the_hours(
    twilio, number_a, callback_assistant, fake_groq, tenant_a
):
    zone = callbacks._zone(tenant_a)
    night = (timezone.now() + timedelta(days=1)).astimezone(zone).replace(hour=23, minute=0)
    call_sid, _ = _ask_for_callback(twilio, number_a, fake_groq, {"at": f"{night:%Y-%m-%d %H:%M}"})

    result = json.loads(fake_groq.requests[1].messages[-1]["content"])
    assert "between 08:00 and 21:00" in result["error"]
    with scopes_disabled():
        assert not ScheduledCallback.objects.exists()


def test_the_tool_is_offered_only_when_switched_on(twilio, number_a, assistant_a, fake_groq):
    twilio.gather(twilio.voice(number_a.number)[0], number_a.number, "Call me back later.")

    tools = fake_groq.requests[0].body.get("tools") or []
    assert callbacks.TOOL_NAME not in [t["function"]["name"] for t in tools]


def _scheduled(tenant, assistant, number, *, due_in=timedelta(0), to=CALLER):
    with scopes_disabled():
        return ScheduledCallback.objects.create(
            tenant=tenant,
            assistant=assistant,
            phone_number=number,
            number=to,
            due_at=timezone.now() + due_in,
        )


def test_a_tenant_at_its_call_limit_has_its_callback_wait(
    tenant_a, assistant_a, number_a, twilio_cloud
):
    with scopes_disabled():
        RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
        Call.objects.create(
            tenant=tenant_a,
            call_sid="CA" + uuid.uuid4().hex,
            status=Call.Status.IN_PROGRESS,
            started_at=timezone.now(),
        )
    callback = _scheduled(tenant_a, assistant_a, number_a)

    assert callbacks.callbacks_place_due() == 0
    with scopes_disabled():
        callback.refresh_from_db()
    assert callback.status == ScheduledCallback.Status.SCHEDULED
    assert callback.due_at > timezone.now() + timedelta(seconds=30)
    assert twilio_cloud.calls == {}


def test_a_number_put_on_the_list_after_the_promise_is_not_called(
    tenant_a, assistant_a, number_a, twilio_cloud
):
    callback = _scheduled(tenant_a, assistant_a, number_a)
    with scopes_disabled():
        DoNotCall.objects.create(tenant=tenant_a, number=CALLER)

    assert callbacks.callbacks_place_due() == 0
    with scopes_disabled():
        callback.refresh_from_db()
    assert callback.status == ScheduledCallback.Status.DO_NOT_CALL
    assert twilio_cloud.calls == {}


def test_a_canceled_callback_is_not_placed(
    api, key_a, tenant_a, assistant_a, number_a, twilio_cloud
):
    callback = _scheduled(tenant_a, assistant_a, number_a)
    client = api(key=key_a)

    listed = client.get("/api/v1/callbacks/").json()["results"]
    assert [row["id"] for row in listed] == [str(callback.id)]
    response = client.post(f"/api/v1/callbacks/{callback.id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    assert client.post(f"/api/v1/callbacks/{callback.id}/cancel/").status_code == 400

    assert callbacks.callbacks_place_due() == 0
    assert twilio_cloud.calls == {}


@pytest.mark.parametrize("as_key", [True, False], ids=["api key", "session"])
def test_an_outsider_sees_no_callbacks(
    api, key_b, charlie, tenant_a, assistant_a, number_a, as_key
):
    callback = _scheduled(tenant_a, assistant_a, number_a, due_in=timedelta(hours=1))
    client = api(key=key_b) if as_key else api(charlie)

    assert client.get("/api/v1/callbacks/").json()["results"] == []
    assert client.get(f"/api/v1/callbacks/{callback.id}/").status_code == 404
    assert client.post(f"/api/v1/callbacks/{callback.id}/cancel/").status_code == 404
    with scopes_disabled():
        callback.refresh_from_db()
    assert callback.status == ScheduledCallback.Status.SCHEDULED


def test_an_outsider_admin_sees_no_callbacks_and_cannot_cancel(
    client, charlie, alice, tenant_a, assistant_a, number_a
):
    callback = _scheduled(tenant_a, assistant_a, number_a, due_in=timedelta(hours=1))
    url = "/admin/campaigns/scheduledcallback/"

    client.force_login(charlie)
    assert str(callback.number) not in client.get(url).content.decode()
    assert client.get(f"{url}{callback.pk}/change/").status_code in (302, 404)
    client.post(url, {"action": "cancel_callbacks", "_selected_action": [str(callback.pk)]})
    with scopes_disabled():
        callback.refresh_from_db()
    assert callback.status == ScheduledCallback.Status.SCHEDULED

    client.force_login(alice)
    assert CALLER in client.get(url).content.decode()
    client.post(url, {"action": "cancel_callbacks", "_selected_action": [str(callback.pk)]})
    with scopes_disabled():
        callback.refresh_from_db()
    assert callback.status == ScheduledCallback.Status.CANCELED


def test_the_api_switches_the_tool_on_and_refuses_unknown_names(api, key_a, key_b, assistant_a):
    url = f"/api/v1/assistants/{assistant_a.id}/builtin-tools/"

    on = api(key=key_a).patch(url, {"registered": [callbacks.TOOL_NAME]}, format="json")
    assert on.status_code == 200 and on.json()["registered"] == [callbacks.TOOL_NAME]
    unknown = api(key=key_a).patch(url, {"registered": ["launch_rockets"]}, format="json")
    assert unknown.status_code == 400 and "launch_rockets" in unknown.content.decode()
    assert api(key=key_b).patch(url, {"registered": []}, format="json").status_code == 404
    assert api(key=key_a).get(url).json()["registered"] == [callbacks.TOOL_NAME]


def _written_but_not_placed(tenant, assistant, number, settings) -> ScheduledCallback:
    """A callback claimed (its Call written) by a worker that then stopped, long ago."""
    callback = _scheduled(tenant, assistant, number)
    [claimed] = callbacks._claim_batch()
    with scopes_disabled():
        claimed.outbound.__class__.objects.filter(pk=claimed.outbound_id).update(
            created_at=timezone.now()
            - timedelta(seconds=settings.CAMPAIGN_DIAL_RECONCILE_SECONDS + 5)
        )
    assert claimed.pk == callback.pk
    return claimed


def test_a_callback_written_but_never_placed_is_placed_again_once(
    tenant_a, assistant_a, number_a, twilio_cloud, settings
):
    stuck = _written_but_not_placed(tenant_a, assistant_a, number_a, settings)

    assert callbacks.callbacks_place_due() == 1
    assert twilio_cloud.wait_idle(timeout=20)
    assert callbacks.callbacks_place_due() == 0
    assert twilio_cloud.creates_to(CALLER) == 1
    with scopes_disabled():
        stuck.refresh_from_db()
        first = Call.objects.get(outbound__pk=stuck.outbound_id)
        abandoned = Call.objects.exclude(pk=first.pk).get(to_number=CALLER)
    assert stuck.status == ScheduledCallback.Status.PLACED
    assert first.call_sid in twilio_cloud.calls
    assert (abandoned.status, abandoned.error) == ("failed", "never placed: the worker stopped")


def test_a_callback_twilio_did_place_is_adopted_not_placed_again(
    tenant_a, assistant_a, number_a, twilio_cloud, settings
):
    stuck = _written_but_not_placed(tenant_a, assistant_a, number_a, settings)
    call = stuck.outbound.call
    sid = twilio_calls.call_create(
        tenant=tenant_a,
        to=CALLER,
        from_=number_a.number,
        call_id=call.id,
        detect_machines=False,
        record=False,
    )

    assert callbacks.callbacks_place_due() == 0
    assert twilio_cloud.wait_idle(timeout=20)
    assert twilio_cloud.creates_to(CALLER) == 1
    with scopes_disabled():
        call.refresh_from_db()
        stuck.refresh_from_db()
    assert call.call_sid == sid and stuck.status == ScheduledCallback.Status.PLACED


def test_a_relay_call_schedules_a_callback_too(twilio, number_a, callback_assistant, fake_groq):
    with scopes_disabled():
        callback_assistant.mode = AssistantConfig.Mode.RELAY
        callback_assistant.save()
    fake_groq.queue_tool_calls([{"name": callbacks.TOOL_NAME, "arguments": {"in_minutes": 60}}])
    call_sid, response = twilio.voice(number_a.number)
    socket_url, _, _ = relay_socket(response)

    async def session():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Could you call me back in an hour?")
        frames = await client.answer()
        await client.close()
        return frames

    frames = async_to_sync(session)()

    assert "scheduled" in text_of(frames)
    with scopes_disabled():
        callback = ScheduledCallback.objects.get()
    assert callback.promised_on.call_sid == call_sid and callback.number == CALLER
    expected = timezone.now() + timedelta(minutes=60)
    assert abs((callback.due_at - expected).total_seconds()) < 60


def test_a_callback_from_a_number_switched_off_meanwhile_fails_with_the_reason(
    tenant_a, assistant_a, number_a, twilio_cloud
):
    callback = _scheduled(tenant_a, assistant_a, number_a)
    with scopes_disabled():
        number_a.active = False
        number_a.save()

    assert callbacks.callbacks_place_due() == 0
    with scopes_disabled():
        callback.refresh_from_db()
    assert callback.status == ScheduledCallback.Status.FAILED
    assert "switched off" in callback.error
    assert twilio_cloud.calls == {}


def test_the_owner_switches_the_tool_on_in_the_admin(client, alice, charlie, assistant_a):
    with scopes_disabled():
        switches = builtin_tools_set(assistant=assistant_a, end_call=True)
    url = f"/admin/tools/builtintools/{switches.pk}/change/"
    form = {
        "tenant": str(assistant_a.tenant_id),
        "assistant": str(assistant_a.pk),
        "end_call": "on",
        "registered": [callbacks.TOOL_NAME],
    }

    client.force_login(alice)
    assert "Schedule a callback the caller asks for" in client.get(url).content.decode()
    assert client.post(url, form).status_code == 302
    with scopes_disabled():
        switches.refresh_from_db()
    assert switches.registered == [callbacks.TOOL_NAME] and switches.end_call

    client.force_login(charlie)
    assert client.post(url, {**form, "registered": []}).status_code == 404
    with scopes_disabled():
        switches.refresh_from_db()
    assert switches.registered == [callbacks.TOOL_NAME]
