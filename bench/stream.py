"""Stream mode's voice-to-voice latency, split into its stages, and what one server process holds.

    .venv/bin/python bench/stream.py                        # 1, 10 and 50 concurrent calls
    .venv/bin/python bench/stream.py --calls 50 --seconds 60 --relay

Voice to voice: the last frame of the caller's speech sent -> the first frame of the assistant's
audio received, as Twilio would see it. Every call is Twilio's side over a real Media Streams
WebSocket: an espeak-ng line sent as 20 ms mu-law frames in real time (silence in between, as a
phone line sends), the assistant's audio played back at Twilio's pace with its marks echoed, the
next line `--rhythm` seconds after the answer. The platform is one daphne process; the Deepgram
stand-in (recognition and Aura speech, a tone for a voice) and the fake Groq server run in
processes of their own, with the latencies given.

The stages, per turn: endpointing (the silence the recogniser waits for, `--endpointing-ms`),
the recogniser's final (`--final-ms`), the LLM's first token (`--ttft-ms`) and its first sentence
(at `--tps`), the voice's first audio chunk (`--first-chunk-ms`); the platform's own share is
the rest. CPU: the daphne process's CPU time over the level's wall time, per active call (both
directions of audio flow all the time). With `--relay`, relay mode's overhead (prompt -> first
text frame minus the LLM's first token) is measured at the same levels, against the same fake
Groq server. Nothing here asserts timings: it reports them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

from harness import (
    ROOT,
    bench_tenant,
    configure_environment,
    create_database,
    daphne_server,
    fake_groq_process,
    free_port,
    machine,
    percentile,
    process_cpu_seconds,
    python_speed_ns,
)

LINE = "Can you repair a leaking radiator this week?"
ANSWER = "Yes, we can come on Thursday. Shall I book that for you?"


@dataclass
class Level:
    calls: int
    voice_to_voice: list[float] = field(default_factory=list)
    call_sids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0  # daphne's
    stand_in_cpu_seconds: float = 0.0  # the Deepgram stand-in's
    client_cpu_seconds: float = 0.0  # this process's (Twilio's side)
    wall_seconds: float = 0.0
    client_lag_ms: list[float] = field(default_factory=list)


@contextmanager
def fake_deepgram_process(*, final_ms: float, first_chunk_ms: float):
    """The Deepgram stand-in in a process of its own; yields its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "fake_deepgram",
            "--port",
            "0",
            "--voice",
            "tone",
            "--final-latency-ms",
            str(final_ms),
            "--first-chunk-ms",
            str(first_chunk_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = ""
        for line in process.stdout:
            if line.startswith("DEEPGRAM_BASE_URL="):
                url = line.strip().split("=", 1)[1]
                break
        if not url:
            raise RuntimeError("the Deepgram stand-in did not start")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


async def one_call(
    *, base: str, token: str, number: str, line: bytes, until: float, rhythm: float, level: Level
) -> None:
    import httpx
    import websockets

    from calls.transports.signatures import sign
    from devtools.media_simulator import StreamTurn, TwilioMediaStream, parse_stream
    from devtools.simulator import new_call

    call_sid, params = new_call(to=number, from_=f"+1555{uuid.uuid4().int % 10**7:07d}")
    level.call_sids.append(call_sid)
    url = base + "/twilio/voice"
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            url,
            data=params,
            headers={"X-Twilio-Signature": sign(url=url, params=params, auth_token=token)},
        )
    socket_url, _, parameters = parse_stream(response.content)
    if not socket_url:
        level.errors.append(f"voice: HTTP {response.status_code}")
        return
    headers = {"X-Twilio-Signature": sign(url=socket_url, params={}, auth_token=token)}
    async with websockets.connect(
        socket_url, additional_headers=headers, open_timeout=60, ping_interval=None
    ) as socket:
        twilio = TwilioMediaStream(socket, stream_sid="MZ" + uuid.uuid4().hex)
        await twilio.start(call_sid=call_sid, parameters=parameters)
        async with twilio.running():
            twilio.turn = StreamTurn(caller="")
            await twilio.assistant_done(30)
            while time.monotonic() < until and not twilio.closed.is_set():
                turn = twilio.turn = StreamTurn(caller=LINE)
                await twilio.say(line)
                await twilio.assistant_done(30)
                if turn.voice_to_voice_ms is None:
                    level.errors.append("no answer")
                else:
                    level.voice_to_voice.append(turn.voice_to_voice_ms)
                await asyncio.sleep(rhythm)
            await twilio.send("stop", stop={"callSid": call_sid})


async def loop_lag(until: float, level: Level) -> None:
    """How late this client's event loop wakes up (a busy client measures late)."""
    while time.monotonic() < until:
        asked = time.monotonic()
        await asyncio.sleep(0.05)
        level.client_lag_ms.append((time.monotonic() - asked - 0.05) * 1000)


def run_level(
    *,
    calls: int,
    seconds: float,
    rhythm: float,
    base: str,
    token: str,
    number: str,
    line: bytes,
    daphne_pid: int,
    stand_in_pid: int,
) -> Level:
    level = Level(calls=calls)

    async def run() -> None:
        until = time.monotonic() + seconds

        # Callers do not all start at once: spread over one rhythm.
        async def staggered(index: int) -> None:
            await asyncio.sleep(rhythm * index / calls)
            try:
                await one_call(
                    base=base,
                    token=token,
                    number=number,
                    line=line,
                    until=until,
                    rhythm=rhythm,
                    level=level,
                )
            except Exception as exc:
                level.errors.append(f"{type(exc).__name__}: {exc}"[:200])

        await asyncio.gather(loop_lag(until, level), *(staggered(i) for i in range(calls)))

    cpu, wall = process_cpu_seconds(daphne_pid), time.monotonic()
    stand_in, client = process_cpu_seconds(stand_in_pid), time.process_time()
    asyncio.run(run())
    level.cpu_seconds = process_cpu_seconds(daphne_pid) - cpu
    level.stand_in_cpu_seconds = process_cpu_seconds(stand_in_pid) - stand_in
    level.client_cpu_seconds = time.process_time() - client
    level.wall_seconds = time.monotonic() - wall
    return level


def stored_stages(call_sids: list[str]) -> list[dict]:
    """The stored timings of the answered turns (ms from the caller's last voiced frame)."""
    from django_scopes import scopes_disabled

    from calls.models import Turn

    with scopes_disabled():
        return list(
            Turn.objects.filter(call__call_sid__in=call_sids, role="assistant", source="llm")
            .exclude(first_audio_ms=None)
            .values(
                "transcript_final_ms", "llm_first_token_ms", "first_audio_ms", "response_sent_ms"
            )
        )


def relay_overhead(
    *, calls: int, seconds: float, rhythm: float, base: str, token: str, number: str, ttft_ms: float
) -> list[float]:
    from relay import RelayStats, run_sessions

    stats = RelayStats()
    asyncio.run(
        run_sessions(
            base=base,
            token=token,
            number=number,
            sessions=calls,
            prompts=1,
            pause=rhythm,
            stats=stats,
            until=time.monotonic() + seconds,
            ramp_seconds=rhythm,
        )
    )
    return [ms - ttft_ms for ms in stats.first_ms]


def p(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.0f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, action="append", help="concurrent calls (repeat)")
    parser.add_argument("--seconds", type=float, default=40.0, help="per level")
    parser.add_argument("--rhythm", type=float, default=2.0, help="pause after each answer (s)")
    parser.add_argument("--ttft-ms", type=float, default=150.0)
    parser.add_argument("--tps", type=float, default=280.0)
    parser.add_argument("--endpointing-ms", type=int, default=300)
    parser.add_argument("--final-ms", type=float, default=50.0)
    parser.add_argument("--first-chunk-ms", type=float, default=100.0)
    parser.add_argument("--relay", action="store_true", help="relay mode's overhead alongside")
    args = parser.parse_args()
    levels = args.calls or [1, 10, 50]

    speed_before = python_speed_ns()
    env = configure_environment()
    import django

    django.setup()
    create_database()
    from django.conf import settings
    from django_scopes import scopes_disabled

    from devtools.fake_groq import tokenize
    from devtools.media_simulator import spoken
    from devtools.testing import FAKE_DEEPGRAM_KEY, FAKE_GROQ_KEY

    _, assistant, number = bench_tenant(mode="stream", tts_engine="say", generous_limits=True)
    _, _, relay_number = bench_tenant(mode="relay", tts_engine="say", generous_limits=True)
    with scopes_disabled():
        assistant.voice_provider = "deepgram"
        assistant.endpointing_ms = args.endpointing_ms
        assistant.greeting = "Hello."
        assistant.save()
    line = asyncio.run(spoken(LINE))
    first_sentence_ms = len(tokenize(ANSWER.split(". ")[0] + ".")) / args.tps * 1000
    providers_ms = (
        args.endpointing_ms + args.final_ms + args.ttft_ms + first_sentence_ms + args.first_chunk_ms
    )

    rows, relay_rows, notes = [], [], []
    with (
        fake_groq_process(ttft_ms=args.ttft_ms, tps=args.tps) as (groq_url, groq),
        fake_deepgram_process(final_ms=args.final_ms, first_chunk_ms=args.first_chunk_ms) as (
            dg_url,
            dg_pid,
        ),
    ):
        groq.configure(answer=ANSWER)
        port = free_port()
        server_env = {
            **env,
            "GROQ_BASE_URL": groq_url,
            "GROQ_API_KEY": FAKE_GROQ_KEY,
            "DEEPGRAM_BASE_URL": dg_url,
            "DEEPGRAM_API_KEY": FAKE_DEEPGRAM_KEY,
            "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
            "PUBLIC_BASE_URL": "",
            "ANSWER_CACHE_SECONDS": "0",
        }
        base = f"http://127.0.0.1:{port}"
        with daphne_server(server_env, port) as daphne:
            idle_cpu = process_cpu_seconds(daphne.pid)
            time.sleep(5)
            idle_rate = (process_cpu_seconds(daphne.pid) - idle_cpu) / 5
            # A first call warms the server up (connections to the providers, imports).
            run_level(
                calls=1,
                seconds=3,
                rhythm=args.rhythm,
                base=base,
                token=settings.TWILIO_AUTH_TOKEN,
                number=number.number,
                line=line,
                daphne_pid=daphne.pid,
                stand_in_pid=dg_pid,
            )
            for calls in levels:
                level = run_level(
                    calls=calls,
                    seconds=args.seconds,
                    rhythm=args.rhythm,
                    base=base,
                    token=settings.TWILIO_AUTH_TOKEN,
                    number=number.number,
                    line=line,
                    daphne_pid=daphne.pid,
                    stand_in_pid=dg_pid,
                )
                stages = stored_stages(level.call_sids)
                share = [v - providers_ms for v in level.voice_to_voice]
                busy = level.cpu_seconds - idle_rate * level.wall_seconds
                cpu_per_call = 100 * busy / level.wall_seconds / calls
                rows.append((level, stages, share, cpu_per_call))
                if args.relay:
                    relay_rows.append(
                        (
                            calls,
                            relay_overhead(
                                calls=calls,
                                seconds=args.seconds,
                                rhythm=args.rhythm,
                                base=base,
                                token=settings.TWILIO_AUTH_TOKEN,
                                number=relay_number.number,
                                ttft_ms=args.ttft_ms,
                            ),
                        )
                    )
                if level.errors:
                    notes.append(
                        f"{calls} calls: {len(level.errors)} errors, e.g. {level.errors[0]}"
                    )
    speed_after = python_speed_ns()

    print(f"## Stream mode: voice to voice ({machine()})\n")
    print(
        f"Command: `.venv/bin/python bench/stream.py {' '.join(sys.argv[1:])}`. Python speed "
        f"check: {speed_before:.0f} ns per iteration before, {speed_after:.0f} after."
    )
    print(
        f"Providers: endpointing {args.endpointing_ms} ms, recogniser final +{args.final_ms:g} ms, "
        f"LLM first token {args.ttft_ms:g} ms, first sentence {first_sentence_ms:.0f} ms at "
        f"{args.tps:g} tokens/s, voice first chunk {args.first_chunk_ms:g} ms: "
        f"{providers_ms:.0f} ms in all. A line of {len(line) / 8000:.1f} s every answer + "
        f"{args.rhythm:g} s per call, {args.seconds:g} s per level.\n"
    )
    print(
        "| calls | turns | voice to voice p50 / p90 / p99 (ms) | platform share p50 / p90 / p99 (ms) "
        "| transcript final p50 | LLM first token p50 | first audio chunk p50 | first audio sent p50 "
        "| daphne CPU per call (% of a core) | CPU of the Deepgram stand-in / Twilio's side "
        "(% of a core) | client loop lag p99 (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for level, stages, share, cpu_per_call in rows:
        v = level.voice_to_voice
        final = [s["transcript_final_ms"] for s in stages if s["transcript_final_ms"] is not None]
        llm = [s["llm_first_token_ms"] for s in stages if s["llm_first_token_ms"] is not None]
        first = [s["first_audio_ms"] for s in stages]
        sent = [s["response_sent_ms"] for s in stages if s["response_sent_ms"] is not None]
        print(
            f"| {level.calls} | {len(v)} | {p(v, 50)} / {p(v, 90)} / {p(v, 99)} | "
            f"{p(share, 50)} / {p(share, 90)} / {p(share, 99)} | {p(final, 50)} | {p(llm, 50)} | "
            f"{p(first, 50)} | {p(sent, 50)} | {cpu_per_call:.2f} | "
            f"{100 * level.stand_in_cpu_seconds / level.wall_seconds:.0f} / "
            f"{100 * level.client_cpu_seconds / level.wall_seconds:.0f} | "
            f"{p(level.client_lag_ms, 99)} |"
        )
    print(
        "\nStored stages are ms from the moment the caller stopped speaking as the server "
        "reckons it (the recogniser's last word end on the audio clock, else the last audible "
        "frame); the stand-in's endpointing silence starts at the same place. CPU per call: the "
        f"daphne process's CPU over the level, less its idle rate ({100 * idle_rate:.2f} % of a "
        "core), divided by the calls."
    )
    if relay_rows:
        print(
            "\n| calls | relay: prompt -> first text frame minus LLM first token, p50 / p90 / p99 (ms) |"
        )
        print("|---|---|")
        for calls, overhead in relay_rows:
            print(f"| {calls} | {p(overhead, 50)} / {p(overhead, 90)} / {p(overhead, 99)} |")
    for note in notes:
        print(f"\n{note}")
    print(f"\n(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
