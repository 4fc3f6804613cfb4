"""Play Twilio's part of a phone call against the platform's real webhooks.

Each request is signed like Twilio signs it; the TwiML answers are read like Twilio reads them
(<Say>, <Play> fetched, <Gather> action followed, <Hangup>/<Reject> end the call).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx
import websockets

from calls.transports.signatures import sign

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
        self,
        *,
        base_url: str,
        auth_token: str,
        transport: Transport | None = None,
        fetch: Fetch | None = None,
        timeout: float = 20.0,
    ) -> None:
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

    def completed(self, base: dict[str, str], *, started: float) -> int:
        """Twilio's last status callback for a call that began at `started` (monotonic)."""
        status, _, _ = self.post(
            "/twilio/status",
            {
                **base,
                "CallStatus": "completed",
                "CallDuration": str(int(time.monotonic() - started)),
                "SequenceNumber": "3",
                "CallbackSource": "call-progress-events",
            },
        )
        return status

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
        self,
        *,
        to: str,
        from_: str,
        utterances: list[str],
        account_sid: str = "",
        on_step: Callable[[Step], None] | None = None,
        pause: float = 0.0,
    ) -> SimulatedCall:
        """Play one call; `pause` seconds pass between an answer and the caller's next words."""
        call_sid, base = new_call(to=to, from_=from_, account_sid=account_sid)
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


# --- relay mode: Twilio's side of a ConversationRelay WebSocket ---------------------------------


@dataclass
class RelayTurn:
    caller: str
    text: str = ""
    frames: int = 0
    first_token_ms: float | None = None  # prompt sent -> first `text` frame
    last_token_ms: float | None = None  # prompt sent -> `last: true`


@dataclass
class SimulatedRelayCall:
    call_sid: str
    voice_status: int = 0
    socket_url: str = ""
    refused: str = ""
    turns: list[RelayTurn] = field(default_factory=list)
    handoff: dict | None = None
    action_status: int = 0
    action_said: list[Said] = field(default_factory=list)
    dialled: str = ""
    press_ignored: bool = False
    status_code: int = 0


PRESS_WAIT_SECONDS = 5.0


def new_call(*, to: str, from_: str, account_sid: str = "") -> tuple[str, dict[str, str]]:
    """A new CallSid and the parameters Twilio sends with every webhook of that call."""
    call_sid = "CA" + uuid.uuid4().hex
    return call_sid, {
        "CallSid": call_sid,
        "AccountSid": account_sid or "AC" + "0" * 32,
        "From": from_,
        "To": to,
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


def parse_connect(body: bytes) -> tuple[str, str, dict[str, str]]:
    """(socket URL, <Connect action> URL, <Parameter>s) of a ConversationRelay TwiML answer."""
    root = ET.fromstring(body)
    relay = next(root.iter("ConversationRelay"), None)
    connect = next(root.iter("Connect"), None)
    if relay is None or connect is None:
        return "", "", {}
    parameters = {p.get("name", ""): p.get("value", "") for p in relay.iter("Parameter")}
    return relay.get("url", ""), connect.get("action", ""), parameters


def _relay_call(
    simulator: TwilioSimulator,
    *,
    to: str,
    from_: str,
    utterances: list[str],
    press: str,
    account_sid: str,
    on_turn: Callable[[RelayTurn], None] | None,
    timeout: float,
) -> SimulatedRelayCall:
    call_sid, base = new_call(to=to, from_=from_, account_sid=account_sid)
    call = SimulatedRelayCall(call_sid=call_sid)
    started = time.monotonic()
    call.voice_status, body, _ = simulator.post("/twilio/voice", {**base, "CallStatus": "ringing"})
    socket_url, action, parameters = (
        parse_connect(body) if call.voice_status == 200 else ("", "", {})
    )
    call.socket_url = socket_url
    if not socket_url:
        if call.voice_status == 200 and b"<Gather" in body:
            call.refused = (
                f"the assistant answering {to} is in gather mode, not relay: run simulate_call "
                "without --relay, or set the assistant's mode to relay"
            )
        else:
            call.refused = "the voice webhook did not connect a ConversationRelay session"
        # The call may have been answered: end it as Twilio would, so that it does not stay live.
        call.status_code, _, _ = simulator.post(
            "/twilio/status", {**base, "CallStatus": "completed", "CallDuration": "0"}
        )
        return call

    async def converse() -> None:
        signature = sign(url=socket_url, params={}, auth_token=simulator.auth_token)
        async with websockets.connect(
            socket_url,
            additional_headers={"X-Twilio-Signature": signature},
            open_timeout=timeout,
            max_size=None,
        ) as socket:
            setup = {
                "type": "setup",
                "sessionId": "VX" + uuid.uuid4().hex,
                "callSid": call_sid,
                "accountSid": base["AccountSid"],
                "from": from_,
                "to": to,
                "direction": "inbound",
                "callStatus": "RINGING",
                "customParameters": parameters,
            }
            await socket.send(json.dumps(setup))
            for text in utterances:
                turn = RelayTurn(caller=text)
                sent_at = time.perf_counter()
                await socket.send(
                    json.dumps(
                        {"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True}
                    )
                )
                while True:
                    message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
                    if message.get("type") == "end":
                        call.handoff = json.loads(message.get("handoffData") or "{}")
                        break
                    if message.get("type") != "text":
                        continue
                    elapsed = (time.perf_counter() - sent_at) * 1000
                    if message.get("token"):
                        turn.frames += 1
                        turn.text += message["token"]
                        if turn.first_token_ms is None:
                            turn.first_token_ms = elapsed
                    if message.get("last"):
                        turn.last_token_ms = elapsed
                        break
                call.turns.append(turn)
                if on_turn:
                    on_turn(turn)
                if call.handoff is not None:
                    return
            if press:
                await socket.send(json.dumps({"type": "dtmf", "digit": press}))
                try:
                    async with asyncio.timeout(min(timeout, PRESS_WAIT_SECONDS)):
                        while call.handoff is None:
                            message = json.loads(await socket.recv())
                            if message.get("type") == "end":
                                call.handoff = json.loads(message.get("handoffData") or "{}")
                except TimeoutError:
                    call.press_ignored = True  # the digit did nothing: the caller hangs up

    try:
        asyncio.run(converse())
    except websockets.InvalidStatus as exc:
        call.refused = f"handshake refused: HTTP {exc.response.status_code}"
        return call
    action_params = {
        **base,
        "CallStatus": "in-progress",
        "SessionId": "VX" + uuid.uuid4().hex,
        "SessionStatus": "ended" if call.handoff is not None else "completed",
        "SessionDuration": str(int(time.monotonic() - started)),
    }
    if call.handoff is not None:
        action_params["HandoffData"] = json.dumps(call.handoff)
    call.action_status, body, _ = simulator.post(action, action_params)
    if call.action_status == 200:
        call.action_said, call.dialled = read_action_answer(body)
    call.status_code = simulator.completed(base, started=started)
    return call


def read_action_answer(body: bytes) -> tuple[list[Said], str]:
    """(what is said, the number dialled) in the TwiML a <Connect action> URL answered."""
    dial = next(ET.fromstring(body).iter("Dial"), None)
    return parse_twiml(body)[0], (dial.text or "").strip() if dial is not None else ""


def run_relay(
    simulator: TwilioSimulator,
    *,
    to: str,
    from_: str,
    utterances: list[str],
    press: str = "",
    account_sid: str = "",
    on_turn: Callable[[RelayTurn], None] | None = None,
    timeout: float = 30.0,
) -> SimulatedRelayCall:
    """Play a relay-mode call: the voice webhook, then ConversationRelay's WebSocket side
    (setup, a prompt per utterance, optionally a keypad digit), then the <Connect action>."""
    return _relay_call(
        simulator,
        to=to,
        from_=from_,
        utterances=utterances,
        press=press,
        account_sid=account_sid,
        on_turn=on_turn,
        timeout=timeout,
    )
