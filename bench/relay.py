"""Relay-mode scenarios: Twilio's side of ConversationRelay over real WebSockets.

Each session: the signed `/twilio/voice` webhook, a signed WebSocket handshake, `setup`, then
prompts; for each prompt the time to the first `text` frame and to `last:true` is recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from harness import ms

from devtools.fake_groq import tokenize


@dataclass
class RelayStats:
    first_ms: list[float] = field(default_factory=list)  # prompt -> first text frame
    last_ms: list[float] = field(default_factory=list)  # prompt -> last:true
    tokens: int = 0  # LLM tokens received (a text frame may carry several)
    frames: int = 0  # text frames received
    answers: int = 0
    errors: list[str] = field(default_factory=list)
    setup_ms: list[float] = field(default_factory=list)  # webhook + handshake + setup


async def _open(base: str, token: str, number: str, http):
    """A relay session: the voice webhook, then the socket."""
    return await open_socket(*await voice_webhook(base, token, number, http), token=token)


async def voice_webhook(base: str, token: str, number: str, http) -> tuple[str, str, dict]:
    """Twilio's signed `/twilio/voice` for a new call: (CallSid, socket URL, its parameters)."""
    from calls.transports.signatures import sign
    from devtools.simulator import parse_connect

    call_sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": call_sid, "From": f"+1555{uuid.uuid4().int % 10**7:07d}", "To": number}
    url = base + "/twilio/voice"
    response = await http.post(
        url,
        data=params,
        headers={"X-Twilio-Signature": sign(url=url, params=params, auth_token=token)},
    )
    socket_url, _, parameters = parse_connect(response.content)
    if not socket_url:
        raise RuntimeError(f"no ConversationRelay in the voice answer ({response.status_code})")
    return call_sid, socket_url, parameters


async def open_socket(call_sid: str, socket_url: str, parameters: dict, *, token: str):
    """The call's ConversationRelay socket: the signed handshake, then `setup`."""
    import websockets

    from calls.transports.signatures import sign

    headers = {"X-Twilio-Signature": sign(url=socket_url, params={}, auth_token=token)}
    socket = await websockets.connect(
        socket_url, additional_headers=headers, open_timeout=60, ping_interval=None
    )
    await socket.send(
        json.dumps({"type": "setup", "callSid": call_sid, "customParameters": parameters})
    )
    return socket


async def _ask(socket, question: str, stats: RelayStats, timeout: float) -> None:
    sent = time.perf_counter()
    await socket.send(json.dumps({"type": "prompt", "voicePrompt": question, "last": True}))
    first = None
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if frame.get("type") != "text":
            continue
        if frame.get("token"):
            stats.tokens += len(tokenize(frame["token"]))
            stats.frames += 1
            if first is None:
                first = time.perf_counter()
        if frame.get("last"):
            break
    done = time.perf_counter()
    stats.first_ms.append(ms((first or done) - sent))
    stats.last_ms.append(ms(done - sent))
    stats.answers += 1


async def run_sessions(
    *,
    base: str,
    token: str,
    number: str,
    sessions: int,
    prompts: int,
    pause: float,
    stats: RelayStats,
    until: float | None = None,
    ramp_seconds: float = 0.0,
    timeout: float = 30.0,
) -> None:
    """`sessions` calls at once, each asking `prompts` questions `pause` seconds apart (or until
    `until`, a time.monotonic() value)."""
    import httpx

    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one(index: int) -> None:
            if ramp_seconds:
                await asyncio.sleep(ramp_seconds * index / sessions)
            try:
                started = time.perf_counter()
                socket = await _open(base, token, number, http)
                stats.setup_ms.append(ms(time.perf_counter() - started))
            except Exception as exc:
                stats.errors.append(f"open: {type(exc).__name__}: {exc}"[:200])
                return
            try:
                asked = 0
                while asked < prompts or (until is not None and time.monotonic() < until):
                    if asked:
                        await asyncio.sleep(pause)
                        if until is not None and time.monotonic() >= until:
                            break
                    question = f"Question {asked} of session {index}: can you help with my boiler?"
                    await _ask(socket, question, stats, timeout)
                    asked += 1
                    if until is None and asked >= prompts:
                        break
            except Exception as exc:
                stats.errors.append(f"ask: {type(exc).__name__}: {exc}"[:200])
            finally:
                await socket.close()

        await asyncio.gather(*(one(i) for i in range(sessions)))


async def open_sessions(
    *, base: str, token: str, number: str, count: int, stats: RelayStats, concurrency: int = 50
) -> list:
    """Open `count` relay sessions (webhook, handshake, setup), `concurrency` at a time."""
    import httpx

    sockets: list = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as http:

        async def one() -> None:
            async with gate:
                started = time.perf_counter()
                try:
                    sockets.append(await _open(base, token, number, http))
                    stats.setup_ms.append(ms(time.perf_counter() - started))
                except Exception as exc:
                    stats.errors.append(f"open: {type(exc).__name__}: {exc}"[:200])

        await asyncio.gather(*(one() for _ in range(count)))
    return sockets


async def drive(
    sockets: list, *, until: float, pause: float, stats: RelayStats, timeout: float = 30.0
) -> None:
    """Each open session asks, waits for the whole answer, waits `pause` seconds (a caller's
    rhythm), and asks again, until `until` (time.monotonic())."""

    async def one(index: int, socket) -> None:
        # Spread the first prompts over one pause, as callers do not all speak at once.
        await asyncio.sleep(pause * index / max(1, len(sockets)))
        asked = 0
        try:
            while time.monotonic() < until:
                await _ask(
                    socket, f"Question {asked} of session {index}: my boiler?", stats, timeout
                )
                asked += 1
                await asyncio.sleep(pause)
        except Exception as exc:
            stats.errors.append(f"ask: {type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(one(i, s) for i, s in enumerate(sockets)))


async def ask_each_once(
    sockets: list, *, spread: float, stats: RelayStats, timeout: float = 30.0
) -> None:
    """Each open session asks one question, the questions spread over `spread` seconds."""

    async def one(index: int, socket) -> None:
        await asyncio.sleep(spread * index / max(1, len(sockets)))
        try:
            await _ask(socket, f"Session {index} again: is my boiler fixed?", stats, timeout)
        except Exception as exc:
            stats.errors.append(f"ask after idle: {type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(one(i, s) for i, s in enumerate(sockets)))


async def close_all(sockets: list) -> None:
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
