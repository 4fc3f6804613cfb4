"""A local server that speaks the parts of Twilio's REST API the platform uses, and then plays
each call it is asked to place against the platform's webhooks, as Twilio would.

The official `twilio` library works against it unchanged (`client.api.base_url`, which the
platform sets from TWILIO_API_BASE_URL). It serves, under `/2010-04-01/Accounts/<AccountSid>/`
with HTTP basic auth (account SID and auth token):

- `Calls.json` POST (create: `To`, `From`, `Url`, `StatusCallback` + `StatusCallbackEvent`,
  `MachineDetection` + `AsyncAmd` + `AsyncAmdStatusCallback`) and GET (list, `To`/`From` filters);
- `Calls/<CallSid>.json` POST (update: `Twiml`, `Status=completed`);
- `Recordings/<RecordingSid>.mp3` GET (the media file) and `.json` DELETE;
- `IncomingPhoneNumbers.json` GET (list, `PhoneNumber` filter) and
  `IncomingPhoneNumbers/<Sid>.json` POST (update `VoiceUrl`, `VoiceFallbackUrl`, `StatusCallback`).

Each created call is then played in a thread, every webhook signed with the account's auth token
(X-Twilio-Signature, as `twilio.request_validator` computes it):

- `answered`: status callbacks initiated, ringing; `Url` is fetched (the greeting's TwiML), the
  `answered` status callback, the AMD result `human`, one gather per scripted caller utterance
  (`speech`), then `completed` with its duration;
- `machine`: as answered, but the AMD result is `machine_end_beep`; what the platform then does
  with the call (a `Twiml` update: a message left after the beep; `Status=completed`: hung up)
  is recorded, and the call completes;
- `busy`, `no-answer`, `failed`: initiated, ringing, then that final status, without `Url`.

A call created with `Record=true` gets a recording once it is over, announced to its
`RecordingStatusCallback` (`RecordingSid`, `RecordingUrl`, `RecordingStatus=completed`).

`call_in()` plays an inbound call instead: someone dials one of the account's numbers; its voice
URL is fetched (`Direction=inbound`), then one gather per scripted utterance of the caller
(`speech`, by the caller's number), then the number's status callback gets `completed`. An answer
that starts with `<Start><Recording recordingStatusCallback=...>` gets a recording, announced to
that callback once the call is over.

The outcome is chosen per destination number (`outcomes`, else `default_outcome`). The server
measures what Twilio would see of a dialler: creates per destination, the most calls in progress
at once, and the most creates within any one second.

In-process use (tests, benchmarks)::

    with FakeTwilioServer() as twilio:
        twilio.add_account(sid, token)
        twilio.outcomes["+14155550123"] = "busy"
        ... point TWILIO_API_BASE_URL at twilio.base_url ...
        twilio.wait_idle()
        assert twilio.max_active <= 5
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests
import requests.adapters
from twilio.request_validator import RequestValidator

OUTCOMES = frozenset({"answered", "machine", "busy", "no-answer", "failed"})
_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>AC[0-9a-f]{32})"
_CALLS = re.compile(_ACCOUNT + r"/Calls\.json$")
_CALL = re.compile(_ACCOUNT + r"/Calls/(?P<sid>CA[0-9a-f]{32})\.json$")
_NUMBERS = re.compile(_ACCOUNT + r"/IncomingPhoneNumbers\.json$")
_NUMBER = re.compile(_ACCOUNT + r"/IncomingPhoneNumbers/(?P<number>PN[0-9a-f]{32})\.json$")
_RECORDING = re.compile(_ACCOUNT + r"/Recordings/(?P<recording>RE[0-9a-f]{32})\.(?P<ext>json|mp3)$")
# What a recording's media file holds here: an MP3 frame header and silence.
RECORDING_AUDIO = b"\xff\xfb\x90\x64" + b"\x00" * 413
WEBHOOK_TIMEOUT_SECONDS = 15.0  # what Twilio waits for a webhook


@dataclass
class FakeCall:
    """One call the server was asked to place, and what happened to it."""

    sid: str
    account_sid: str
    to: str
    from_: str
    params: dict[str, list[str]]
    outcome: str
    created_at: datetime
    status: str = "queued"
    events: list[str] = field(default_factory=list)  # status callbacks sent, in order
    twiml: list[str] = field(default_factory=list)  # TwiML the platform answered with
    updates: list[dict[str, str]] = field(default_factory=list)
    said_after_beep: str = ""
    direction: str = "outbound-api"
    recording_callback: str = ""  # <Start><Recording>'s recordingStatusCallback, once started
    ended: bool = False
    update_event: threading.Event = field(default_factory=threading.Event)

    def param(self, name: str) -> str:
        return self.params.get(name, [""])[0]

    def resource(self) -> dict:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "status": self.status,
            "direction": self.direction,
            "date_created": format_datetime(self.created_at, usegmt=True),
            "start_time": format_datetime(self.created_at, usegmt=True),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{self.sid}.json",
        }


class FakeTwilioServer:
    """Twilio's REST API on loopback; plays every call it places against the webhooks."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ring_seconds: float = 0.05,
        talk_seconds: float = 0.2,
        machine_wait_seconds: float = 5.0,
    ) -> None:
        self.ring_seconds = ring_seconds
        self.talk_seconds = talk_seconds
        self.machine_wait_seconds = machine_wait_seconds
        self.tokens: dict[str, str] = {}
        self.outcomes: dict[str, str] = {}
        self.default_outcome = "answered"
        self.speech: dict[str, list[str]] = {}  # destination -> what the callee says
        self.speech_for_all: list[str] = []  # what callees not in `speech` say
        self.calls: dict[str, FakeCall] = {}
        self.numbers: dict[str, dict[str, dict]] = {}  # account -> number sid -> resource
        self.recordings: dict[str, str] = {}  # recording sid -> call sid
        self.recordings_deleted: set[str] = set()
        self.create_times: list[float] = []
        self.errors: list[str] = []  # webhooks that did not answer as Twilio expects
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._players: list[threading.Thread] = []
        self._http = requests.Session()
        # One connection per call being played, as Twilio's many senders would have.
        self._http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=256))
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.base_url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> FakeTwilioServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (`manage.py fake_twilio`)."""
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeTwilioServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add_account(self, sid: str, token: str) -> None:
        self.tokens[sid] = token

    def reset(self) -> None:
        """Forget calls, outcomes and measurements (accounts stay)."""
        with self._lock:
            self.outcomes.clear()
            self.speech.clear()
            self.speech_for_all = []
            self.calls.clear()
            self.recordings.clear()
            self.recordings_deleted.clear()
            self.create_times.clear()
            self.errors.clear()
            self.default_outcome = "answered"
            self.active = self.max_active = 0

    # --- measurements ---------------------------------------------------------------------------
    def creates_to(self, number: str) -> int:
        return sum(1 for call in list(self.calls.values()) if call.to == number)

    def max_creates_per_second(self) -> int:
        """The most calls created within any window of one second."""
        times = sorted(self.create_times)
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every call placed so far has been played to its end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                players = [t for t in self._players if t.is_alive()]
            if not players:
                return True
            players[0].join(max(deadline - time.monotonic(), 0))
        return False

    # --- the REST API -----------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                self._answer(*fake.handle("GET", self.path, self.headers, b""))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(*fake.handle("POST", self.path, self.headers, self.rfile.read(length)))

            def do_DELETE(self) -> None:  # noqa: N802
                self._answer(*fake.handle("DELETE", self.path, self.headers, b""))

            def _answer(self, status: int, body: dict | bytes | None) -> None:
                if isinstance(body, bytes):
                    payload, kind = body, "audio/mpeg"
                else:
                    payload = b"" if body is None else json.dumps(body).encode()
                    kind = "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def handle(
        self, method: str, path: str, headers, body: bytes
    ) -> tuple[int, dict | bytes | None]:
        url = urlsplit(path)
        match = next(
            (m for p in (_CALLS, _CALL, _RECORDING, _NUMBERS, _NUMBER) if (m := p.match(url.path))),
            None,
        )
        if match is None:
            return 404, _error(404, 20404, "The requested resource was not found")
        account = match.group("account")
        if not self._authorized(account, headers.get("Authorization", "")):
            return 401, _error(401, 20003, "Authenticate")
        params = parse_qs(body.decode(), keep_blank_values=True)
        if "recording" in match.groupdict():
            return self._recording(method, match.group("recording"), match.group("ext"))
        if "number" in match.groupdict():
            return self._number_update(account, match.group("number"), params)
        if match.re is _NUMBERS:
            return self._numbers(account, parse_qs(url.query))
        if "sid" in match.groupdict():
            if method != "POST":
                return 405, _error(405, 20004, "Method not allowed")
            return self._update(account, match.group("sid"), params)
        if method == "GET":
            return self._list(account, parse_qs(url.query))
        return self._create(account, params)

    def _authorized(self, account: str, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return scheme == "Basic" and user == account and self.tokens.get(account) == password

    def _create(self, account: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        to, from_, url = (params.get(name, [""])[0] for name in ("To", "From", "Url"))
        if not (to and from_ and url):
            return 400, _error(400, 21201, "No 'To', 'From' or 'Url' number is specified")
        call = FakeCall(
            sid="CA" + uuid.uuid4().hex,
            account_sid=account,
            to=to,
            from_=from_,
            params=params,
            outcome=self.outcomes.get(to, self.default_outcome),
            created_at=datetime.now(UTC),
        )
        player = threading.Thread(target=self._play, args=(call,), daemon=True)
        with self._lock:
            self.calls[call.sid] = call
            self.create_times.append(time.monotonic())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self._players.append(player)
        player.start()
        return 201, call.resource()

    def call_in(
        self,
        *,
        account: str,
        from_: str,
        to: str,
        voice_url: str = "",
        status_callback: str = "",
    ) -> FakeCall:
        """Someone dials `to`, one of the account's numbers: play the call against its voice URL
        and status callback (given, else the ones set on the number). Returns at once; the
        call is played in a thread (`wait_idle()` waits for it)."""
        wired = next(
            (n for n in self.numbers.get(account, {}).values() if n["phone_number"] == to), {}
        )
        params = {
            "Url": [voice_url or wired.get("voice_url", "")],
            "StatusCallback": [status_callback or wired.get("status_callback", "")],
        }
        call = FakeCall(
            sid="CA" + uuid.uuid4().hex,
            account_sid=account,
            to=to,
            from_=from_,
            params=params,
            outcome="answered",
            created_at=datetime.now(UTC),
            direction="inbound",
        )
        player = threading.Thread(target=self._play_inbound, args=(call,), daemon=True)
        with self._lock:
            self.calls[call.sid] = call
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self._players.append(player)
        player.start()
        return call

    def _list(self, account: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        to, from_ = query.get("To", [""])[0], query.get("From", [""])[0]
        listed = [
            call.resource()
            for call in list(self.calls.values())
            if call.account_sid == account
            and (not to or call.to == to)
            and (not from_ or call.from_ == from_)
        ]
        base = f"/2010-04-01/Accounts/{account}/Calls.json"
        return 200, {
            "calls": listed,
            "page": 0,
            "page_size": 50,
            "uri": base,
            "first_page_uri": base,
            "next_page_uri": None,
            "previous_page_uri": None,
        }

    def _update(self, account: str, sid: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        call = self.calls.get(sid)
        if call is None or call.account_sid != account:
            return 404, _error(404, 20404, "The requested resource was not found")
        update = {name: values[0] for name, values in params.items()}
        call.updates.append(update)
        if twiml := update.get("Twiml"):
            call.said_after_beep = " ".join(_texts(twiml, "Say"))
        call.update_event.set()
        return 200, call.resource()

    def add_number(self, account: str, number: str) -> str:
        """Give the account an incoming phone number (pointed nowhere); returns its sid."""
        sid = "PN" + uuid.uuid4().hex
        self.numbers.setdefault(account, {})[sid] = {
            "sid": sid,
            "account_sid": account,
            "phone_number": number,
            "friendly_name": number,
            "voice_url": "",
            "voice_fallback_url": "",
            "status_callback": "",
            "uri": f"/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{sid}.json",
        }
        return sid

    def _numbers(self, account: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        pattern = query.get("PhoneNumber", [""])[0]
        listed = [n for n in self.numbers.get(account, {}).values() if pattern in n["phone_number"]]
        base = f"/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json"
        return 200, {
            "incoming_phone_numbers": listed,
            "page": 0,
            "page_size": 50,
            "uri": base,
            "first_page_uri": base,
            "next_page_uri": None,
            "previous_page_uri": None,
        }

    def _number_update(
        self, account: str, sid: str, params: dict[str, list[str]]
    ) -> tuple[int, dict]:
        number = self.numbers.get(account, {}).get(sid)
        if number is None:
            return 404, _error(404, 20404, "The requested resource was not found")
        fields = {"VoiceUrl": "voice_url", "VoiceFallbackUrl": "voice_fallback_url"}
        for name, key in (fields | {"StatusCallback": "status_callback"}).items():
            if name in params:
                number[key] = params[name][0]
        return 200, number

    def _recording(self, method: str, sid: str, ext: str) -> tuple[int, dict | bytes | None]:
        if sid not in self.recordings or sid in self.recordings_deleted:
            return 404, _error(404, 20404, "The requested resource was not found")
        if method == "DELETE" and ext == "json":
            self.recordings_deleted.add(sid)
            return 204, None
        if method == "GET" and ext == "mp3":
            return 200, RECORDING_AUDIO
        return 405, _error(405, 20004, "Method not allowed")

    # --- playing a call ---------------------------------------------------------------------
    def _play(self, call: FakeCall) -> None:
        sequence = iter(range(100))
        try:
            time.sleep(self.ring_seconds)
            self._status(call, "initiated", next(sequence))
            self._status(call, "ringing", next(sequence))
            if call.outcome in ("busy", "no-answer", "failed"):
                self._status(call, call.outcome, next(sequence), final=True)
                return
            call.status = "in-progress"
            twiml = self._webhook(call, call.param("Url"), {"CallStatus": "in-progress"})
            self._status(call, "in-progress", next(sequence))
            started = time.monotonic()
            if call.outcome == "machine":
                self._amd(call, "machine_end_beep")
                call.update_event.wait(self.machine_wait_seconds)
            else:
                self._amd(call, "human")
                self._converse(call, twiml, self.speech.get(call.to, self.speech_for_all))
            duration = str(max(int(time.monotonic() - started), 1))
            self._status(call, "completed", next(sequence), final=True, duration=duration)
            self._recorded(call, duration)
        except Exception as exc:  # a broken webhook must not stop the other calls
            self.errors.append(f"{call.sid}: {exc!r}")
        finally:
            self._ended(call)

    def _play_inbound(self, call: FakeCall) -> None:
        try:
            time.sleep(self.ring_seconds)
            call.status = "in-progress"
            started = time.monotonic()
            twiml = self._webhook(call, call.param("Url"), {"CallStatus": "ringing"})
            call.recording_callback = _recording_callback(twiml)
            self._converse(call, twiml, self.speech.get(call.from_, self.speech_for_all))
            duration = str(max(int(time.monotonic() - started), 1))
            self._status(call, "completed", 1, final=True, duration=duration)
            self._recorded(call, duration)
        except Exception as exc:  # a broken webhook must not stop the other calls
            self.errors.append(f"{call.sid}: {exc!r}")
        finally:
            self._ended(call)

    def _converse(self, call: FakeCall, twiml: str, utterances: list[str]) -> None:
        """One gather per utterance, while the platform's TwiML gathers; then some talk."""
        for words in utterances:
            action = _gather_action(twiml)
            if not action:
                break
            extra = {"CallStatus": "in-progress", "SpeechResult": words}
            twiml = self._webhook(call, action, extra | {"Confidence": "0.9"})
        time.sleep(self.talk_seconds)

    def _ended(self, call: FakeCall) -> None:
        """The call is over (before Twilio tells the platform so): its line is free again."""
        with self._lock:
            if not call.ended:
                call.ended = True
                self.active -= 1

    def _recorded(self, call: FakeCall, duration: str) -> None:
        """A recorded call's recording is ready once the call is over."""
        if call.param("Record") == "true":
            callback, source = call.param("RecordingStatusCallback"), "OutboundAPI"
        elif call.recording_callback:
            callback, source = call.recording_callback, "StartCallRecordingTwiML"
        else:
            return
        sid = "RE" + uuid.uuid4().hex
        self.recordings[sid] = call.sid
        if callback:
            url = f"{self.base_url}/2010-04-01/Accounts/{call.account_sid}/Recordings/{sid}"
            extra = {
                "RecordingSid": sid,
                "RecordingUrl": url,
                "RecordingStatus": "completed",
                "RecordingDuration": duration,
                "RecordingChannels": "1",
                "RecordingSource": source,
            }
            self._webhook(call, callback, extra)

    def _amd(self, call: FakeCall, answered_by: str) -> None:
        if call.param("MachineDetection") and call.param("AsyncAmdStatusCallback"):
            extra = {"AnsweredBy": answered_by, "MachineDetectionDuration": "2100"}
            self._webhook(call, call.param("AsyncAmdStatusCallback"), extra)

    def _status(
        self, call: FakeCall, status: str, sequence: int, *, final: bool = False, duration="0"
    ) -> None:
        callback = call.param("StatusCallback")
        wanted = set(call.params.get("StatusCallbackEvent", []))
        event = "answered" if status == "in-progress" else status
        call.status = status
        if final:
            self._ended(call)
        if not callback or not (final or event in wanted):
            return
        call.events.append(status)
        extra = {
            "CallStatus": status,
            "SequenceNumber": str(sequence),
            "CallbackSource": "call-progress-events",
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
        }
        if final:
            extra["CallDuration"] = duration
        self._webhook(call, callback, extra)

    def _webhook(self, call: FakeCall, url: str, extra: dict[str, str]) -> str:
        params = {
            "CallSid": call.sid,
            "AccountSid": call.account_sid,
            "From": call.from_,
            "To": call.to,
            "Direction": call.direction,
            "ApiVersion": "2010-04-01",
            **extra,
        }
        token = self.tokens[call.account_sid]
        signature = RequestValidator(token).compute_signature(url, params)
        response = self._http.post(
            url,
            data=params,
            headers={"X-Twilio-Signature": signature},
            timeout=WEBHOOK_TIMEOUT_SECONDS,
        )
        if response.status_code >= 400:
            self.errors.append(f"{call.sid}: {url} answered {response.status_code}")
        body = response.text
        if body.lstrip().startswith("<"):
            call.twiml.append(body)
        return body


def _texts(twiml: str, tag: str) -> list[str]:
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return []
    return [(element.text or "").strip() for element in root.iter(tag)]


def _gather_action(twiml: str) -> str:
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return ""
    gather = root.find(".//Gather")
    return gather.get("action", "") if gather is not None else ""


def _recording_callback(twiml: str) -> str:
    """The recordingStatusCallback of a <Start><Recording> in `twiml` ("" when none starts)."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return ""
    recording = root.find("./Start/Recording")
    return recording.get("recordingStatusCallback", "") if recording is not None else ""


def _error(status: int, code: int, message: str) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
