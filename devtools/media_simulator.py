"""Play Twilio's side of a stream-mode call: the voice webhook, then a bidirectional Media
Stream over a real WebSocket. The caller's lines are spoken with espeak-ng and sent as mu-law
20 ms frames in real time (silence in between, as a phone line sends); the assistant's audio is
received, "played" at the speed Twilio plays it (marks are echoed once the audio before them
has been played; `clear` drops the rest), and kept per turn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
import uuid
import wave
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import websockets

from calls.transports.signatures import sign
from devtools.simulator import Said, TwilioSimulator, new_call, read_action_answer
from providers.audio import FRAME_BYTES, FRAME_MS, SILENCE, frames, level, mulaw_to_pcm
from providers.speech.espeak_stream import EspeakStream
from providers.speech.streaming import VoiceSettings

FRAME_SECONDS = FRAME_MS / 1000
# The assistant is done talking once its audio has played and nothing came for this long.
ANSWER_QUIET_SECONDS = 0.8
LOUD = 400.0  # RMS of a frame that counts as speech


@dataclass
class StreamTurn:
    caller: str
    audio: bytes = b""  # the assistant's mu-law audio received for this turn
    voice_to_voice_ms: float | None = None  # last caller speech frame sent -> first audio back
    last_audio_ms: float | None = None  # ... -> last audio frame received
    marks: int = 0
    media_messages: int = 0  # `media` messages the audio came in
    # Twilio was told to drop the audio not played yet while this line was said (a barge-in).
    cleared: bool = False

    def wav(self) -> bytes:
        """The assistant's audio of this turn as a 16-bit WAV file."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(mulaw_to_pcm(self.audio).tobytes())
        return buffer.getvalue()


@dataclass
class SimulatedStreamCall:
    call_sid: str
    voice_status: int = 0
    socket_url: str = ""
    refused: str = ""
    greeting: StreamTurn = field(default_factory=lambda: StreamTurn(caller=""))
    turns: list[StreamTurn] = field(default_factory=list)
    closed_by_platform: bool = False
    action_status: int = 0
    action_said: list[Said] = field(default_factory=list)
    dialled: str = ""
    status_code: int = 0


def parse_stream(body: bytes) -> tuple[str, str, dict[str, str]]:
    """(socket URL, <Connect action> URL, <Parameter>s) of a <Connect><Stream> TwiML answer."""
    root = ET.fromstring(body)
    stream = next(root.iter("Stream"), None)
    connect = next(root.iter("Connect"), None)
    if stream is None or connect is None:
        return "", "", {}
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.iter("Parameter")}
    return stream.get("url", ""), connect.get("action", ""), parameters


async def spoken(text: str) -> bytes:
    """`text` said by espeak-ng, as mu-law 8 kHz."""
    return b"".join([chunk async for chunk in EspeakStream(VoiceSettings()).speak(text)])


class TwilioMediaStream:
    """Twilio's end of one media stream: a microphone that sends a frame every 20 ms and a
    loudspeaker that plays what the platform sends, in real time."""

    def __init__(self, socket, *, stream_sid: str) -> None:
        self.socket = socket
        self.stream_sid = stream_sid
        self.sequence = 0
        self.chunk = 0
        self.speech: list[bytes] = []  # frames still to say
        self.last_speech_sent_at = 0.0
        self.played_until = 0.0  # when the audio received so far ends playing
        self.last_audio_at = 0.0
        self.pending_marks: list[tuple[float, str]] = []
        self.turn: StreamTurn | None = None
        self.closed = asyncio.Event()

    async def send(self, event: str, **data: object) -> None:
        self.sequence += 1
        message = {"event": event, "sequenceNumber": str(self.sequence), **data}
        if event != "connected":
            message["streamSid"] = self.stream_sid
        await self.socket.send(json.dumps(message))

    async def start(
        self, *, call_sid: str, parameters: dict[str, str], account_sid: str = ""
    ) -> None:
        """Twilio's opening messages: `connected`, then `start` for the call."""
        await self.send("connected", protocol="Call", version="1.0.0")
        start = {
            "streamSid": self.stream_sid,
            "accountSid": account_sid or "AC" + "0" * 32,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await self.send("start", start=start)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The microphone sends and the loudspeaker plays while inside."""
        tasks = [asyncio.create_task(self.microphone()), asyncio.create_task(self.loudspeaker())]
        try:
            yield
        finally:
            self.closed.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def microphone(self) -> None:
        """A frame every 20 ms: the caller's speech when there is some, silence otherwise."""
        started = time.monotonic()
        while not self.closed.is_set():
            frame = self.speech.pop(0) if self.speech else SILENCE * FRAME_BYTES
            self.chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(self.chunk),
                "timestamp": str(self.chunk * FRAME_MS),
                "payload": base64.b64encode(frame).decode("ascii"),
            }
            try:
                await self.send("media", media=media)
            except websockets.ConnectionClosed:
                return
            if level(mulaw_to_pcm(frame)) >= LOUD:
                self.last_speech_sent_at = time.monotonic()
            await self._echo_marks()
            await asyncio.sleep(max(0.0, started + self.chunk * FRAME_SECONDS - time.monotonic()))

    async def loudspeaker(self) -> None:
        try:
            async for raw in self.socket:
                message = json.loads(raw)
                kind = message.get("event")
                if kind == "media":
                    self._play(base64.b64decode(message["media"]["payload"]))
                elif kind == "mark":
                    self.pending_marks.append((self.played_until, message["mark"]["name"]))
                elif kind == "clear":
                    await self._clear()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    def _play(self, frame: bytes) -> None:
        now = time.monotonic()
        turn = self.turn
        if turn is not None:
            if turn.voice_to_voice_ms is None and self.last_speech_sent_at:
                turn.voice_to_voice_ms = (now - self.last_speech_sent_at) * 1000
            if self.last_speech_sent_at:
                turn.last_audio_ms = (now - self.last_speech_sent_at) * 1000
            turn.audio += frame
            turn.media_messages += 1
        self.played_until = max(self.played_until, now) + len(frame) / 8000
        self.last_audio_at = now

    async def _echo_marks(self) -> None:
        now = time.monotonic()
        while self.pending_marks and self.pending_marks[0][0] <= now:
            _, name = self.pending_marks.pop(0)
            if self.turn is not None:
                self.turn.marks += 1
            await self.send("mark", mark={"name": name})

    async def _clear(self) -> None:
        """Drop what is not played yet; the pending marks come back at once."""
        self.played_until = time.monotonic()
        if self.turn is not None:
            self.turn.cleared = True
        for _, name in self.pending_marks:
            await self.send("mark", mark={"name": name})
        self.pending_marks.clear()

    async def say(self, audio: bytes) -> None:
        self.speech.extend(frames(audio))
        while self.speech and not self.closed.is_set():
            await asyncio.sleep(FRAME_SECONDS)

    async def assistant_done(self, timeout: float) -> None:
        """Wait until the assistant has answered, its audio has played and it has been quiet
        for a moment."""
        deadline = time.monotonic() + timeout
        while not (self.turn and self.turn.audio) and time.monotonic() < deadline:
            if self.closed.is_set():
                return
            await asyncio.sleep(FRAME_SECONDS)
        while time.monotonic() < deadline and not self.closed.is_set():
            now = time.monotonic()
            quiet = now - max(self.last_audio_at, self.last_speech_sent_at)
            if now >= self.played_until and not self.pending_marks and quiet > ANSWER_QUIET_SECONDS:
                return
            await asyncio.sleep(FRAME_SECONDS)


async def _converse(
    result: SimulatedStreamCall,
    *,
    socket_url: str,
    auth_token: str,
    base: dict[str, str],
    parameters: dict[str, str],
    utterances: list[str],
    press: str,
    barge_in_after_ms: float | None,
    on_turn: Callable[[StreamTurn], None] | None,
    timeout: float,
) -> None:
    signature = sign(url=socket_url, params={}, auth_token=auth_token)
    lines = [await spoken(text) for text in utterances]
    async with websockets.connect(
        socket_url, additional_headers={"X-Twilio-Signature": signature}, open_timeout=timeout
    ) as socket:
        twilio = TwilioMediaStream(socket, stream_sid="MZ" + uuid.uuid4().hex)
        await twilio.start(
            call_sid=result.call_sid, parameters=parameters, account_sid=base["AccountSid"]
        )
        async with twilio.running():
            twilio.turn = result.greeting
            await twilio.assistant_done(timeout)
            for text, audio in zip(utterances, lines, strict=True):
                turn = twilio.turn = StreamTurn(caller=text)
                await twilio.say(audio)
                if barge_in_after_ms is not None and turn is not None:
                    await _wait_for_audio(twilio, turn, barge_in_after_ms / 1000, timeout)
                else:
                    await twilio.assistant_done(timeout)
                result.turns.append(turn)
                if on_turn:
                    on_turn(turn)
                if twilio.closed.is_set():
                    break
            if press and not twilio.closed.is_set():
                await twilio.send("dtmf", dtmf={"track": "inbound_track", "digit": press})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(twilio.closed.wait(), timeout=5)
            result.closed_by_platform = twilio.closed.is_set()
            if not result.closed_by_platform:
                await twilio.send("stop", stop={"callSid": result.call_sid})


async def _wait_for_audio(
    twilio: TwilioMediaStream, turn: StreamTurn, after: float, timeout: float
) -> None:
    """Wait until the assistant has been talking for `after` seconds (for a barge-in)."""
    deadline = time.monotonic() + timeout
    while not turn.audio and time.monotonic() < deadline and not twilio.closed.is_set():
        await asyncio.sleep(FRAME_SECONDS)
    await asyncio.sleep(after)


def run_stream(
    simulator: TwilioSimulator,
    *,
    to: str,
    from_: str,
    utterances: list[str],
    press: str = "",
    barge_in_after_ms: float | None = None,
    account_sid: str = "",
    on_turn: Callable[[StreamTurn], None] | None = None,
    timeout: float = 30.0,
) -> SimulatedStreamCall:
    """Play a stream-mode call. With `barge_in_after_ms`, each line after the first is spoken
    that long after the assistant's answer to the previous one began (talking over it)."""
    call_sid, base = new_call(to=to, from_=from_, account_sid=account_sid)
    result = SimulatedStreamCall(call_sid=call_sid)
    started = time.monotonic()
    result.voice_status, body, _ = simulator.post(
        "/twilio/voice", {**base, "CallStatus": "ringing"}
    )
    socket_url, action, parameters = (
        parse_stream(body) if result.voice_status == 200 else ("", "", {})
    )
    result.socket_url = socket_url
    if not socket_url:
        result.refused = (
            f"the assistant answering {to} is not in stream mode"
            if result.voice_status == 200
            else f"the voice webhook answered HTTP {result.voice_status}"
        )
        result.status_code, _, _ = simulator.post(
            "/twilio/status", {**base, "CallStatus": "completed", "CallDuration": "0"}
        )
        return result
    try:
        asyncio.run(
            _converse(
                result,
                socket_url=socket_url,
                auth_token=simulator.auth_token,
                base=base,
                parameters=parameters,
                utterances=utterances,
                press=press,
                barge_in_after_ms=barge_in_after_ms,
                on_turn=on_turn,
                timeout=timeout,
            )
        )
    except websockets.InvalidStatus as exc:
        result.refused = f"handshake refused: HTTP {exc.response.status_code}"
        return result
    if result.closed_by_platform:  # Twilio goes on with the <Connect action>
        result.action_status, body, _ = simulator.post(
            action, {**base, "CallStatus": "in-progress"}
        )
        if result.action_status == 200:
            result.action_said, result.dialled = read_action_answer(body)
    result.status_code = simulator.completed(base, started=started)
    return result
