"""Requests to tenant-chosen URLs: signed so the receiver can trust them, and never sent into the
platform's own networks unless allowed. The receiver is a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core import outbound, signing


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, dict, bytes]] = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.received.append((self.path, dict(self.headers), body))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.end_headers()
            return
        answer = b"x" * 200_000 if self.path == "/big" else b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


loopback = override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.0/8"])


def test_a_signed_request_is_verified_by_the_standard_webhooks_library(receiver):
    secret = signing.new_secret()
    body = json.dumps({"type": "call.ended"}).encode()
    headers = signing.signed_headers(body=body, message_id="msg_1", secrets_in_use=[secret]) | {
        "Content-Type": "application/json"
    }
    with loopback:
        answer = outbound.request("POST", receiver + "/hook", headers=headers, content=body)
    assert answer.ok and answer.body == b'{"ok": true}'
    path, got_headers, got_body = Receiver.received[0]
    assert path == "/hook" and got_body == body
    assert Webhook(secret).verify(got_body, got_headers) == {"type": "call.ended"}
    assert got_headers["Host"] == receiver.removeprefix("http://")
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(got_body, got_headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got_body + b" ", got_headers)


def test_during_a_rotation_both_the_old_and_the_new_secret_verify():
    old, new = signing.new_secret(), signing.new_secret()
    body = b"{}"
    headers = signing.signed_headers(body=body, message_id="msg_2", secrets_in_use=[new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) == {}
    assert Webhook(new).verify(body, headers) == {}


def test_a_stale_signature_is_refused_by_the_verifier():
    secret = signing.new_secret()
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    headers = signing.signed_headers(
        body=b"{}", message_id="msg_3", secrets_in_use=[secret], at=long_ago
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", headers)


def test_a_message_without_a_secret_is_not_signed():
    with pytest.raises(ValueError):
        signing.signed_headers(body=b"{}", message_id="msg_4", secrets_in_use=[""])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://0.0.0.0:9/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(url):
    with pytest.raises(outbound.OutboundRefused):
        outbound.request("POST", url, content=b"{}")
    with pytest.raises(outbound.OutboundRefused):
        async_to_sync(outbound.arequest)("POST", url, content=b"{}")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "http://user:pw@example.com/", "http://", "x"],
)
def test_urls_other_than_plain_http_are_refused(url):
    with pytest.raises(outbound.OutboundRefused):
        outbound.request("GET", url)


def test_a_host_name_that_does_not_resolve_is_refused():
    with pytest.raises(outbound.OutboundRefused, match="resolve"):
        outbound.request("GET", "http://no-such-host.invalid/")


def test_an_allowed_network_is_reached_and_nothing_else_is(receiver):
    with override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.2/32"]):
        with pytest.raises(outbound.OutboundRefused):
            outbound.request("POST", receiver + "/hook")
    assert Receiver.received == []
    with loopback:
        assert async_to_sync(outbound.arequest)("POST", receiver + "/hook").status == 200
    assert len(Receiver.received) == 1


def test_redirects_are_not_followed_and_answers_are_bounded(receiver):
    with loopback:
        answer = outbound.request("POST", receiver + "/redirect")
        assert answer.status == 302 and not answer.ok
        big = async_to_sync(outbound.arequest)("POST", receiver + "/big", max_bytes=1000)
    assert [path for path, _, _ in Receiver.received] == ["/redirect", "/big"]
    assert len(big.body) == 1000 and big.text(10) == "x" * 10
