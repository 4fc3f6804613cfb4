"""The platform's ASGI handler answers as Django's own does, crossing into a thread once, in
request threads it keeps for the next requests."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlencode

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_started
from django.http import HttpResponse

from calls.transports.signatures import sign
from config.asgi import application
from core.asgi import SyncRequestHandler

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "testserver"


def _voice(number: str, token: str, call_sid: str) -> tuple[dict, bytes]:
    params = {"CallSid": call_sid, "From": "+15551230000", "To": number}
    signature = sign(url=f"http://{HOST}/twilio/voice", params=params, auth_token=token)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/twilio/voice",
        "raw_path": b"/twilio/voice",
        "query_string": b"",
        "headers": [
            (b"host", HOST.encode()),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"x-twilio-signature", signature.encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    return scope, urlencode(params).encode()


async def _request(app, scope: dict, body: bytes) -> tuple[int, bytes, dict]:
    """Send one request; its status, body and the thread hand-offs it took."""
    crossings = {"to_thread": 0, "to_loop": 0}
    to_thread, to_loop = sync.SyncToAsync.__call__, sync.AsyncToSync.__call__

    async def counted_to_thread(self, *args, **kwargs):
        crossings["to_thread"] += 1
        return await to_thread(self, *args, **kwargs)

    def counted_to_loop(self, *args, **kwargs):
        crossings["to_loop"] += 1
        return to_loop(self, *args, **kwargs)

    sync.SyncToAsync.__call__, sync.AsyncToSync.__call__ = counted_to_thread, counted_to_loop
    try:
        communicator = ApplicationCommunicator(app, scope)
        await communicator.send_input({"type": "http.request", "body": body})
        start = await communicator.receive_output(10)
        content = await communicator.receive_output(10)
        await communicator.wait(10)
    finally:
        sync.SyncToAsync.__call__, sync.AsyncToSync.__call__ = to_thread, to_loop
    return start["status"], content["body"], crossings


def test_a_webhook_crosses_once_and_gets_the_answer_djangos_handler_gives(settings, number_a):
    settings.ALLOWED_HOSTS = [HOST]
    token = settings.TWILIO_AUTH_TOKEN

    ours = asyncio.run(_request(application, *_voice(number_a.number, token, "CA" + "1" * 32)))
    stock = asyncio.run(_request(ASGIHandler(), *_voice(number_a.number, token, "CA" + "2" * 32)))

    assert ours[0] == stock[0] == 200
    assert b"<Gather" in ours[1] or b"<Connect" in ours[1]
    assert ours[1].replace(b"1" * 32, b"") == stock[1].replace(b"2" * 32, b"")
    # Django's handler: the request's start, each adapter of its middleware chain, the view,
    # the response's close. Ours: the start, the whole chain and view, the close.
    assert ours[2]["to_thread"] <= 3 and ours[2]["to_loop"] == 0
    assert stock[2]["to_thread"] + stock[2]["to_loop"] >= 6


def test_a_refused_request_is_answered_and_logged_as_django_does(settings, caplog):
    settings.ALLOWED_HOSTS = [HOST]
    scope, body = _voice("+14155550100", "not the token", "CA" + "3" * 32)
    status, content, _ = asyncio.run(_request(application, scope, body))
    assert status == 403
    assert any(record.name == "django.request" for record in caplog.records)


def test_requests_one_after_another_run_in_the_same_kept_thread(settings, number_a):
    settings.ALLOWED_HOSTS = [HOST]
    token = settings.TWILIO_AUTH_TOKEN
    handler = SyncRequestHandler()
    threads: list[str] = []

    def note_thread(**kwargs) -> None:
        threads.append(threading.current_thread().name)

    request_started.connect(note_thread)
    try:
        answers = [
            asyncio.run(_request(handler, *_voice(number_a.number, token, f"CA{i:032d}")))
            for i in range(3)
        ]
    finally:
        request_started.disconnect(note_thread)

    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert len(threads) == 3 and len(set(threads)) == 1
    assert threads[0].startswith("request") and threads[0] != threading.current_thread().name
    assert len(handler.lanes.idle) == 1


async def _abandon(handler: SyncRequestHandler, scope: dict, body: bytes) -> None:
    """Send a request, then go away while its view runs."""
    communicator = ApplicationCommunicator(handler, scope)
    await communicator.send_input({"type": "http.request", "body": body})
    await asyncio.sleep(0.3)
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(10)


def test_a_thread_that_ran_an_abandoned_request_is_not_kept(settings):
    settings.ALLOWED_HOSTS = [HOST]
    handler = SyncRequestHandler()
    release, threads = threading.Event(), []

    def slow_view(request) -> HttpResponse:  # stands for Django's chain: a view that hangs
        threads.append(threading.current_thread())
        release.wait(10)
        return HttpResponse("late")

    handler.get_response = slow_view
    scope, body = _voice("+14155550100", "token", "CA" + "4" * 32)
    threading.Timer(1.0, release.set).start()  # the view ends a while after the client left
    asyncio.run(_abandon(handler, scope, body))
    assert handler.lanes.idle == []  # the lane was let go, not kept

    handler.get_response = lambda request: HttpResponse("ok")
    status, content, _ = asyncio.run(_request(handler, scope, body))
    assert (status, content) == (200, b"ok")
    assert len(handler.lanes.idle) == 1 and handler.lanes.idle[0] is not None
    threads[0].join(10)
    assert not threads[0].is_alive()  # the abandoned lane's thread ended
