"""A stand-in for Twilio's REST API at the wire: a real HTTP server on loopback that answers
`GET /2010-04-01/Accounts/<AccountSid>/IncomingPhoneNumbers.json` as Twilio does (HTTP basic
auth with the account SID and auth token, the `PhoneNumber` filter, Twilio's page and error
bodies). The official `twilio` client is pointed at it through TWILIO_API_BASE_URL."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/IncomingPhoneNumbers\.json$")


class TwilioStandIn:
    """Accounts (SID -> auth token) and the numbers each holds; records every request."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.numbers: dict[str, list[str]] = {}
        self.requests: list[str] = []
        self.status: int | None = None  # answer every request with this status, if set
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                stand_in.requests.append(self.path)
                status, body = stand_in.answer(self.path, self.headers.get("Authorization", ""))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_account(self, sid: str, token: str, numbers: list[str]) -> None:
        self.tokens[sid] = token
        self.numbers[sid] = list(numbers)

    def start(self) -> TwilioStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, authorization: str) -> tuple[int, dict]:
        if self.status is not None:
            return self.status, _error(self.status, 20500, "Internal Server Error")
        url = urlsplit(path)
        match = _PATH.match(url.path)
        if match is None:
            return 404, _error(404, 20404, "The requested resource was not found")
        sid = match.group(1)
        if not self._authorized(sid, authorization):
            return 401, _error(401, 20003, "Authenticate")
        pattern = parse_qs(url.query).get("PhoneNumber", [""])[0]
        listed = [n for n in self.numbers.get(sid, []) if pattern in n]
        base = f"/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"
        return 200, {
            "incoming_phone_numbers": [_number(sid, n) for n in listed],
            "start": 0,
            "end": max(len(listed) - 1, 0),
            "page": 0,
            "page_size": 50,
            "uri": f"{base}?{url.query}",
            "first_page_uri": f"{base}?{url.query}",
            "next_page_uri": None,
            "previous_page_uri": None,
        }

    def _authorized(self, sid: str, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return user == sid and sid in self.tokens and password == self.tokens[sid]


def give_own_account(tenant, stand_in: TwilioStandIn, *, sid: str, token: str, numbers: list[str]):
    """Let `tenant` bring its own Twilio account (held by the stand-in) with `numbers`."""
    tenant.twilio_account_sid = sid
    tenant.set_twilio_auth_token(token)
    tenant.save()
    stand_in.add_account(sid, token, numbers)


def _number(sid: str, number: str) -> dict:
    pn_sid = "PN" + number.strip("+").rjust(32, "0")
    return {
        "account_sid": sid,
        "sid": pn_sid,
        "phone_number": number,
        "friendly_name": number,
        "status": "in-use",
        "voice_url": "",
        "uri": f"/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers/{pn_sid}.json",
    }


def _error(status: int, code: int, message: str) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
