"""The Twilio stand-in, driven by the real `twilio` library, plays calls against a receiver on
loopback with Twilio's signatures."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from devtools.fake_twilio import FakeTwilioServer
from tenants.twilio_numbers import rest_client

SID, TOKEN = "AC" + "4" * 32, "token-of-the-test"
ROOT = Path(__file__).resolve().parents[2]
VOICE_TWIML = '<Response><Gather action="{base}/gather"><Say>Hello</Say></Gather></Response>'


class Receiver:
    """The platform's side: records each webhook (path, params, signature valid) and answers
    the voice URL with a gather."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                params = dict(parse_qsl(body))
                url = receiver.base_url + self.path
                valid = RequestValidator(TOKEN).validate(
                    url, params, self.headers.get("X-Twilio-Signature", "")
                )
                receiver.posts.append((self.path, params, valid))
                answer = VOICE_TWIML.format(base=receiver.base_url) if self.path == "/voice" else ""
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.posts]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def _calls(base_url: str, token: str = TOKEN):
    client = rest_client(SID, token)
    client.api.base_url = base_url
    return client.api.v2010.accounts(SID).calls


def test_an_answered_call_fetches_the_voice_url_gathers_and_completes(receiver):
    with FakeTwilioServer(talk_seconds=0) as fake:
        fake.add_account(SID, TOKEN)
        fake.speech["+14155550001"] = ["Hi there"]
        calls = _calls(fake.base_url)
        call = calls.create(
            to="+14155550001",
            from_="+14155550100",
            url=receiver.base_url + "/voice",
            status_callback=receiver.base_url + "/status",
            status_callback_event=["answered", "completed"],
        )
        assert fake.wait_idle(timeout=10)

    assert call.sid.startswith("CA") and call.status == "queued"
    assert receiver.paths() == ["/voice", "/status", "/gather", "/status"]
    assert all(valid for _, _, valid in receiver.posts)
    assert receiver.posts[2][1]["SpeechResult"] == "Hi there"
    assert receiver.posts[-1][1]["CallStatus"] == "completed"


def test_a_busy_line_sends_only_the_final_status(receiver):
    with FakeTwilioServer() as fake:
        fake.add_account(SID, TOKEN)
        fake.outcomes["+14155550002"] = "busy"
        calls = _calls(fake.base_url)
        calls.create(
            to="+14155550002",
            from_="+14155550100",
            url=receiver.base_url + "/voice",
            status_callback=receiver.base_url + "/status",
        )
        assert fake.wait_idle(timeout=10)
        listed = calls.list(to="+14155550002")

    assert receiver.paths() == ["/status"]
    assert receiver.posts[0][1]["CallStatus"] == "busy"
    assert [c.to for c in listed] == ["+14155550002"]


def test_a_machine_gets_the_amd_callback_and_waits_for_the_platforms_update(receiver):
    with FakeTwilioServer(machine_wait_seconds=5) as fake:
        fake.add_account(SID, TOKEN)
        fake.outcomes["+14155550003"] = "machine"
        calls = _calls(fake.base_url)
        call = calls.create(
            to="+14155550003",
            from_="+14155550100",
            url=receiver.base_url + "/voice",
            machine_detection="DetectMessageEnd",
            async_amd="true",
            async_amd_status_callback=receiver.base_url + "/amd",
        )
        for _ in range(200):
            if "/amd" in receiver.paths():
                break
            time.sleep(0.05)
        calls(call.sid).update(twiml="<Response><Say>Call us back</Say><Hangup/></Response>")
        assert fake.wait_idle(timeout=10)

    assert dict(receiver.posts[1][1])["AnsweredBy"] == "machine_end_beep"
    assert fake.calls[call.sid].said_after_beep == "Call us back"


def test_wrong_credentials_are_refused_like_twilio_does():
    with FakeTwilioServer() as fake:
        fake.add_account(SID, TOKEN)
        with pytest.raises(TwilioRestException) as refused:
            _calls(fake.base_url, token="wrong").create(
                to="+14155550004", from_="+14155550100", url="http://127.0.0.1:9/"
            )
    assert refused.value.status == 401
    assert fake.calls == {}


def test_the_command_serves_the_stand_in_with_outcomes_per_number(receiver):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "fake_twilio", "--port", "0", "--account-sid", SID]
        + ["--outcome", "+14155550005=no-answer"],
        cwd=ROOT,
        env={**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        process.stdout.readline()
        base_url = process.stdout.readline().split()[0].split("=", 1)[1]
        _calls(base_url).create(
            to="+14155550005",
            from_="+14155550100",
            url=receiver.base_url + "/voice",
            status_callback=receiver.base_url + "/status",
        )
        for _ in range(200):
            if receiver.posts:
                break
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert [(p, params["CallStatus"], valid) for p, params, valid in receiver.posts] == [
        ("/status", "no-answer", True)
    ]
