"""The live feed over a real websocket: the ASGI app, session auth and the configured
channel layer (SQLite file in embedded mode, Redis in services mode)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django_scopes import scopes_disabled

from calls import events
from calls.models import Call
from config.asgi import application
from devtools.testing import BASE_DIR, channels_database_env, database_url
from tenants.models import Membership, Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
TIMEOUT = 5


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def socket(
    user=None, query: str = "", origin: bytes = b"http://localhost"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin)]
    if user is not None:
        cookie = await sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    path = "/ws/dashboard/" + (f"?{query}" if query else "")
    return WebsocketCommunicator(application, path, headers=headers)


async def connected(user=None, query: str = "") -> WebsocketCommunicator:
    communicator = await socket(user, query)
    ok, code = await communicator.connect(timeout=TIMEOUT)
    assert ok, f"refused with {code}"
    hello = await communicator.receive_json_from(timeout=TIMEOUT)
    assert hello["event"] == "hello"
    return communicator


def _call(tenant, sid: str, from_number: str = "+15551230123") -> Call:
    from django.utils import timezone

    with scopes_disabled():
        return Call.objects.create(
            tenant=tenant,
            call_sid=sid,
            from_number=from_number,
            to_number="+14155550100",
            started_at=timezone.now(),
            status=Call.Status.IN_PROGRESS,
        )


async def publish(kind: str, call: Call, **data) -> None:
    await events.apublish(kind, call=call, **data)


async def test_an_anonymous_socket_is_refused(db):
    communicator = await socket()
    ok, code = await communicator.connect(timeout=TIMEOUT)
    assert not ok
    assert code == 4403


async def test_a_page_of_another_site_cannot_open_the_feed(alice):
    communicator = await socket(alice, origin=b"https://evil.example")
    ok, _ = await communicator.connect(timeout=TIMEOUT)
    assert not ok


async def test_a_tenant_admin_gets_their_tenant_events_and_none_of_another(
    alice, tenant_a, tenant_b
):
    call_a = await sync_to_async(_call)(tenant_a, "CAa")
    call_b = await sync_to_async(_call)(tenant_b, "CAb")
    communicator = await connected(alice)
    await publish("started", call_b, from_number="+15550001111", assistant="Bravo orders")
    await publish("turn", call_b, turn={"sequence": 1, "role": "caller", "text": "secret of B"})
    await publish("started", call_a, from_number="+15551230123", assistant="Acme front desk")
    await publish("turn", call_a, turn={"sequence": 1, "role": "caller", "text": "hello A"})
    await publish("partial", call_a, text="We are open")
    await publish("ended", call_a, status="completed", outcome="completed", duration=12)

    received = [await communicator.receive_json_from(timeout=TIMEOUT) for _ in range(4)]
    assert [m["event"] for m in received] == ["started", "turn", "partial", "ended"]
    assert {m["call"] for m in received} == {str(call_a.id)}
    assert received[0]["data"]["from_number"] == "••••••0123"  # masked on the way out
    assert received[1]["data"]["turn"]["text"] == "hello A"
    assert received[2]["data"]["text"] == "We are open"
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_asking_for_another_tenants_stream_is_refused(charlie, tenant_a):
    communicator = await socket(charlie, f"tenant={tenant_a.id}")
    ok, code = await communicator.connect(timeout=TIMEOUT)
    assert not ok
    assert code == 4403


@pytest.mark.parametrize(
    "query",
    ["tenant=not-a-uuid", "tenant=00000000-0000-0000-0000-000000000000", "tenant=" + "x" * 5000],
)
async def test_a_malformed_or_unknown_tenant_is_refused(alice, query):
    communicator = await socket(alice, query)
    ok, code = await communicator.connect(timeout=TIMEOUT)
    assert (ok, code) == (False, 4403)


async def test_a_user_without_a_tenant_is_refused(django_user_model):
    user = await sync_to_async(django_user_model.objects.create_user)("nobody", password="x")
    communicator = await socket(user)
    ok, code = await communicator.connect(timeout=TIMEOUT)
    assert (ok, code) == (False, 4403)


async def test_a_member_may_name_their_own_tenant(bob, tenant_a):
    call_a = await sync_to_async(_call)(tenant_a, "CAbob")
    communicator = await connected(bob, f"tenant={tenant_a.id}")
    await publish("started", call_a, from_number="+15551230123")
    message = await communicator.receive_json_from(timeout=TIMEOUT)
    assert message["call"] == str(call_a.id)
    await communicator.disconnect()


async def test_staff_see_every_tenant_or_filter_one(superuser, tenant_a, tenant_b):
    call_a = await sync_to_async(_call)(tenant_a, "CAsa")
    call_b = await sync_to_async(_call)(tenant_b, "CAsb")
    everything = await connected(superuser)
    only_b = await connected(superuser, f"tenant={tenant_b.id}")
    await publish("started", call_a)
    await publish("started", call_b)
    got_all = {(await everything.receive_json_from(timeout=TIMEOUT))["call"] for _ in range(2)}
    assert got_all == {str(call_a.id), str(call_b.id)}
    assert (await only_b.receive_json_from(timeout=TIMEOUT))["call"] == str(call_b.id)
    assert await only_b.receive_nothing(timeout=0.5)
    await everything.disconnect()
    await only_b.disconnect()


async def test_bad_frames_get_an_error_and_keep_the_socket(alice, tenant_a):
    communicator = await connected(alice)
    for frame in ["{not json", json.dumps({"type": "subscribe", "tenant": "B"}), "x" * 10000, "[]"]:
        await communicator.send_to(text_data=frame)
        reply = await communicator.receive_json_from(timeout=TIMEOUT)
        assert reply["event"] == "protocol_error"
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["event"] == "protocol_error"
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["event"] == "pong"
    await communicator.disconnect()


async def test_unknown_event_kinds_are_not_forwarded(alice, tenant_a):
    call_a = await sync_to_async(_call)(tenant_a, "CAunk")
    communicator = await connected(alice)
    await publish("internal-debug", call_a, secret="x")
    await publish("started", call_a)
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["event"] == "started"
    await communicator.disconnect()


PUBLISHER = """
import django, sys
django.setup()
from django_scopes import scopes_disabled
from calls import events
from calls.models import Call
with scopes_disabled():
    call = Call.objects.get(call_sid=sys.argv[1])
events.publish("turn", call=call, turn={"sequence": 1, "role": "caller", "text": "from another process"})
"""


async def test_events_published_by_another_process_arrive(alice, tenant_a):
    call_a = await sync_to_async(_call)(tenant_a, "CAproc")
    communicator = await connected(alice)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        **channels_database_env(),
        "LOG_LEVEL": "WARNING",
    }
    result = await sync_to_async(subprocess.run)(
        [sys.executable, "-c", PUBLISHER, "CAproc"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    message = await communicator.receive_json_from(timeout=TIMEOUT)
    assert message["data"]["turn"]["text"] == "from another process"
    assert message["call"] == str(call_a.id)
    await communicator.disconnect()


# --- access that changes while the socket is open ---------------------------------------------


async def closed_with(communicator: WebsocketCommunicator) -> int | None:
    """The close code the server sent next (None when it sent anything else)."""
    output = await communicator.receive_output(timeout=TIMEOUT)
    return output.get("code") if output["type"] == "websocket.close" else None


@sync_to_async
def _remove_membership(user, tenant) -> None:
    Membership.objects.filter(user=user, tenant=tenant).delete()


async def test_a_removed_member_is_cut_off_at_once(alice, tenant_a):
    call_a = await sync_to_async(_call)(tenant_a, "CAcut")
    communicator = await connected(alice)
    await _remove_membership(alice, tenant_a)
    assert await closed_with(communicator) == 4403
    await publish("turn", call_a, turn={"sequence": 1, "role": "caller", "text": "not for alice"})
    assert await communicator.receive_nothing(timeout=0.5)


async def test_losing_one_of_two_tenants_stops_only_its_events(alice, tenant_a, tenant_b):
    await sync_to_async(Membership.objects.create)(user=alice, tenant=tenant_b, role=Role.VIEWER)
    call_a = await sync_to_async(_call)(tenant_a, "CAkeep")
    call_b = await sync_to_async(_call)(tenant_b, "CAlost")
    communicator = await connected(alice)
    await publish("started", call_b)
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["call"] == str(call_b.id)

    await _remove_membership(alice, tenant_b)
    await asyncio.sleep(0.5)  # the socket leaves tenant B's group
    await publish("turn", call_b, turn={"sequence": 1, "role": "caller", "text": "secret of B"})
    await publish("started", call_a)
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["call"] == str(call_a.id)
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_new_membership_adds_its_tenant_to_an_open_feed(charlie, tenant_a, tenant_b):
    call_a = await sync_to_async(_call)(tenant_a, "CAgain")
    communicator = await connected(charlie)
    await sync_to_async(Membership.objects.create)(user=charlie, tenant=tenant_a, role=Role.VIEWER)
    await asyncio.sleep(0.5)  # the socket joins tenant A's group
    await publish("started", call_a)
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["call"] == str(call_a.id)
    await communicator.disconnect()


async def test_a_deactivated_user_is_cut_off(bob, tenant_a):
    communicator = await connected(bob)
    bob.is_active = False
    await sync_to_async(bob.save)()
    assert await closed_with(communicator) == 4403


async def test_a_switched_off_tenant_cuts_off_its_members(bob, tenant_a):
    communicator = await connected(bob)
    tenant_a.active = False
    await sync_to_async(tenant_a.save)()
    assert await closed_with(communicator) == 4403


async def test_staff_who_lose_staff_rights_keep_only_their_own_tenant(
    superuser, tenant_a, tenant_b
):
    await sync_to_async(Membership.objects.create)(user=superuser, tenant=tenant_a)
    call_a = await sync_to_async(_call)(tenant_a, "CAdemA")
    call_b = await sync_to_async(_call)(tenant_b, "CAdemB")
    communicator = await connected(superuser)

    @sync_to_async
    def demote() -> None:
        superuser.is_superuser = False
        superuser.save(update_fields=["is_superuser"])

    await demote()
    await asyncio.sleep(0.5)  # the socket leaves the staff group for tenant A's
    await publish("started", call_b)
    await publish("started", call_a)
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["call"] == str(call_a.id)
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_staff_losing_the_see_all_permission_through_a_group_are_cut_off(db, tenant_a):
    @sync_to_async
    def staff_through_group():
        from django.contrib.auth.models import Group, Permission

        user = get_user_model().objects.create_user("ops", password="x", is_staff=True)
        group = Group.objects.create(name="Platform operators")
        group.permissions.add(Permission.objects.get(codename="view_all_tenants"))
        user.groups.add(group)
        return user, group

    user, group = await staff_through_group()
    communicator = await connected(user)
    await sync_to_async(group.permissions.clear)()
    assert await closed_with(communicator) == 4403


async def test_logging_out_ends_that_sessions_feed_only(alice, tenant_a):
    call_a = await sync_to_async(_call)(tenant_a, "CAlogout")

    @sync_to_async
    def two_sessions():
        first, second = Client(), Client()
        first.force_login(alice)
        second.force_login(alice)
        return first, second

    first, second = await two_sessions()
    feeds = []
    for client in (first, second):
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        communicator = WebsocketCommunicator(
            application,
            "/ws/dashboard/",
            headers=[
                (b"origin", b"http://localhost"),
                (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
            ],
        )
        assert (await communicator.connect(timeout=TIMEOUT))[0]
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["event"] == "hello"
        feeds.append(communicator)

    await sync_to_async(first.logout)()
    assert await closed_with(feeds[0]) == 4403
    await publish("started", call_a)
    assert (await feeds[1].receive_json_from(timeout=TIMEOUT))["call"] == str(call_a.id)
    await feeds[1].disconnect()


async def test_another_users_change_leaves_a_feed_alone(alice, bob, tenant_a):
    call_a = await sync_to_async(_call)(tenant_a, "CAalone")
    communicator = await connected(alice)
    await _remove_membership(bob, tenant_a)
    await asyncio.sleep(0.3)
    await publish("started", call_a)
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["call"] == str(call_a.id)
    await communicator.disconnect()
