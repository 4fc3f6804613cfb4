"""Play Twilio's part of a phone call against the platform's real webhooks.

Each request is signed like Twilio signs it; the TwiML answers are read like Twilio reads them
(<Say>, <Play> fetched, <Gather> action followed, <Hangup>/<Reject> end the call).
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from calls.signatures import sign

# Post a form to a path; returns (status, body bytes, content type).
Transport = Callable[[str, dict[str, str], dict[str, str]], tuple[int, bytes, str]]
Fetch = Callable[[str], tuple[int, bytes]]


@dataclass
class Said:
    kind: str  # "play" or "say"
    text: str = ""
    url: str = ""
    audio_bytes: int = 0
    fetch_ms: float = 0.0
    fetch_status: int = 0


@dataclass
class Step:
    caller: str
    status: int
    response_ms: float
    said: list[Said] = field(default_factory=list)
    gather_action: str = ""
    ended: bool = False
    rejected: bool = False

    @property
    def assistant_text(self) -> str:
        return " ".join(s.text or f"[audio {s.url.rsplit('/', 1)[-1]}]" for s in self.said)


@dataclass
class SimulatedCall:
    call_sid: str
    steps: list[Step] = field(default_factory=list)
    status_code: int = 0


def parse_twiml(body: bytes) -> tuple[list[Said], str, bool, bool]:
    """(things said in order, gather action URL, hung up, rejected) of a TwiML document."""
    root = ET.fromstring(body)
    said: list[Said] = []
    action = ""
    hung_up = rejected = False
    for element in root.iter():
        if element.tag == "Say":
            said.append(Said(kind="say", text=(element.text or "").strip()))
        elif element.tag == "Play":
            said.append(Said(kind="play", url=(element.text or "").strip()))
        elif element.tag == "Gather":
            action = element.get("action", "")
        elif element.tag == "Hangup":
            hung_up = True
        elif element.tag == "Reject":
            rejected = True
    return said, action, hung_up, rejected


class TwilioSimulator:
    """Drives one call. `base_url` is where the platform is reachable and what gets signed."""

    def __init__(
        self, *, base_url: str, auth_token: str, transport: Transport | None = None,
        fetch: Fetch | None = None, timeout: float = 20.0,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.auth_token = auth_token
        self._http = httpx.Client(timeout=timeout) if transport is None or fetch is None else None
        self._transport = transport or self._http_post
        self._fetch = fetch or self._http_get

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _http_post(self, url: str, data: dict[str, str], headers: dict[str, str]):
        assert self._http is not None
        response = self._http.post(url, data=data, headers=headers)
        return response.status_code, response.content, response.headers.get("content-type", "")

    def _http_get(self, url: str) -> tuple[int, bytes]:
        assert self._http is not None
        response = self._http.get(url)
        return response.status_code, response.content

    def _absolute(self, url_or_path: str) -> str:
        return urljoin(self.base_url + "/", url_or_path)

    def post(self, url_or_path: str, params: dict[str, str]) -> tuple[int, bytes, float]:
        url = self._absolute(url_or_path)
        signature = sign(url=url, params=params, auth_token=self.auth_token)
        started = time.perf_counter()
        status, body, _ = self._transport(url, params, {"X-Twilio-Signature": signature})
        return status, body, (time.perf_counter() - started) * 1000

    def _fetch_audio(self, said: list[Said]) -> None:
        for item in said:
            if item.kind != "play":
                continue
            url = item.url
            if urlsplit(url).scheme == "":
                url = self._absolute(url)
            started = time.perf_counter()
            item.fetch_status, data = self._fetch(url)
            item.fetch_ms = (time.perf_counter() - started) * 1000
            item.audio_bytes = len(data)

    def _step(self, caller: str, path: str, params: dict[str, str]) -> Step:
        status, body, elapsed = self.post(path, params)
        step = Step(caller=caller, status=status, response_ms=elapsed)
        if status == 200 and body.strip().startswith(b"<"):
            step.said, step.gather_action, step.ended, step.rejected = parse_twiml(body)
            self._fetch_audio(step.said)
            step.ended = step.ended or step.rejected or not step.gather_action
        else:
            step.ended = True
        return step

    def run(
        self, *, to: str, from_: str, utterances: list[str], account_sid: str = "",
        on_step: Callable[[Step], None] | None = None, pause: float = 0.0,
    ) -> SimulatedCall:  # fmt: skip
        """Play one call; `pause` seconds pass between an answer and the caller's next words."""
        call_sid = "CA" + uuid.uuid4().hex
        base = {
            "CallSid": call_sid,
            "AccountSid": account_sid or "AC" + "0" * 32,
            "From": from_,
            "To": to,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        call = SimulatedCall(call_sid=call_sid)
        started = time.monotonic()
        step = self._step("", "/twilio/voice", {**base, "CallStatus": "ringing"})
        call.steps.append(step)
        if on_step:
            on_step(step)
        for text in utterances:
            if step.ended:
                break
            if pause:
                time.sleep(pause)
            params = {
                **base,
                "CallStatus": "in-progress",
                "SpeechResult": text,
                "Confidence": "0.92",
            }
            step = self._step(text, step.gather_action, params)
            call.steps.append(step)
            if on_step:
                on_step(step)
        final = "completed" if call.steps[0].status == 200 else "failed"
        status, _, _ = self.post(
            "/twilio/status",
            {
                **base,
                "CallStatus": final,
                "CallDuration": str(int(time.monotonic() - started)),
                "SequenceNumber": "3",
                "CallbackSource": "call-progress-events",
            },
        )
        call.status_code = status
        return call
