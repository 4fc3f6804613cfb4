"""The platform's ASGI handler answers as Django's own does, crossing into a thread once."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

from calls.transports.signatures import sign
from config.asgi import application

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
