"""Relay mode's own overhead: time from a `prompt` frame to the first `text` frame, minus the
fake Groq server's time to first token.

    .venv/bin/python bench/relay_overhead.py [--prompts 200] [--sessions 20] [--ttft-ms 150]

Starts everything itself: a fresh database (a temporary SQLite file; DATABASE_URL/REDIS_URL
from the environment are used when set, so `DATABASE_URL=postgres://.../bench ...` measures the
services mode; the database is migrated and a bench tenant is created in it), the fake Groq
server on loopback, and a real daphne process. Twilio's side is played over real WebSockets with
signed handshakes, one prompt at a time (the latency of a quiet platform, not of a loaded one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def prepare_database() -> str:
    """Migrate the database and create the bench tenant; returns the number to dial."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django_scopes import scopes_disabled

    from assistants.models import AssistantConfig
    from tenants.models import PhoneNumber, RateLimit, Tenant

    for alias in settings.DATABASES:
        call_command("migrate", database=alias, interactive=False, verbosity=0)
    with scopes_disabled():
        tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
        assistant, _ = AssistantConfig.objects.update_or_create(
            tenant=tenant,
            name="Bench relay",
            defaults={"mode": AssistantConfig.Mode.RELAY, "tts_engine": "say"},
        )
        PhoneNumber.objects.update_or_create(
            number="+14155550999", defaults={"tenant": tenant, "assistant": assistant}
        )
        for kind in RateLimit.Kind.values:
            RateLimit.objects.update_or_create(
                tenant=tenant,
                kind=kind,
                defaults={"limit": 10**9, "window_seconds": 60, "action": "speak_continue"},
            )
    return "+14155550999"


async def session(
    base_url: str, token: str, number: str, prompts: int, results: list[float], sids: list[str]
) -> None:
    import httpx
    import websockets

    from calls.transports.signatures import sign
    from devtools.simulator import parse_connect

    call_sid = "CA" + uuid.uuid4().hex
    sids.append(call_sid)
    params = {"CallSid": call_sid, "From": f"+1555{uuid.uuid4().int % 10**7:07d}", "To": number}
    url = base_url + "/twilio/voice"
    async with httpx.AsyncClient() as client:
        response = await client.post(
            url,
            data=params,
            headers={"X-Twilio-Signature": sign(url=url, params=params, auth_token=token)},
        )
    socket_url, _, parameters = parse_connect(response.content)
    if not socket_url:
        raise RuntimeError(f"no ConversationRelay in the voice answer: {response.text}")
    headers = {"X-Twilio-Signature": sign(url=socket_url, params={}, auth_token=token)}
    async with websockets.connect(socket_url, additional_headers=headers) as socket:
        await socket.send(
            json.dumps({"type": "setup", "callSid": call_sid, "customParameters": parameters})
        )
        for index in range(prompts):
            question = f"Question {index} of call {call_sid}: can you help me with my boiler?"
            sent = time.perf_counter()
            await socket.send(json.dumps({"type": "prompt", "voicePrompt": question, "last": True}))
            first = None
            while True:
                frame = json.loads(await socket.recv())
                if frame.get("type") != "text":
                    continue
                if first is None and frame.get("token"):
                    first = time.perf_counter()
                if frame.get("last"):
                    break
            results.append((first - sent) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--ttft-ms", type=float, default=150.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["PUBLIC_BASE_URL"] = ""
    number = prepare_database()

    from django.conf import settings

    from devtools.testing import FAKE_GROQ_KEY, start_daphne, stop_daphne

    # The fake Groq server runs in a process of its own: in this one it would compete with the
    # measuring client for the interpreter lock.
    fake = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "fake_groq",
            "--port",
            "0",
            "--ttft-ms",
            str(args.ttft_ms),
            "--tps",
            "2000",
            "--answer-tokens",
            "30",
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    groq_url = ""
    for line in fake.stdout:
        if line.startswith("GROQ_BASE_URL="):
            groq_url = line.strip().split("=", 1)[1]
            break
    if not groq_url:
        raise SystemExit("the fake Groq server did not start")
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
        "PYTHONUNBUFFERED": "1",
        "GROQ_BASE_URL": groq_url,
        "GROQ_API_KEY": FAKE_GROQ_KEY,
    }
    server = start_daphne(env=env, log_path=workdir / "daphne.log")
    results: list[float] = []
    sids: list[str] = []
    per_session = max(1, args.prompts // args.sessions)
    try:
        started = time.perf_counter()

        async def run_all() -> None:
            for _ in range(args.sessions):
                await session(
                    server.base_url, settings.TWILIO_AUTH_TOKEN, number, per_session, results, sids
                )

        asyncio.run(run_all())
        elapsed = time.perf_counter() - started
    finally:
        stop_daphne(server)
        fake.terminate()
        fake.wait(timeout=10)
    overhead = [r - args.ttft_ms for r in results]
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    mode = "services" if settings.REDIS_URL else "embedded"
    print(
        f"relay overhead over {len(results)} prompts ({args.sessions} sessions, {mode} mode, {database}),"
    )
    print(f"prompt -> first text frame minus fake Groq ttft {args.ttft_ms:.0f} ms:")
    print(
        f"  p50 {percentile(overhead, 0.5):.1f} ms   p90 {percentile(overhead, 0.9):.1f} ms   "
        f"p99 {percentile(overhead, 0.99):.1f} ms   max {max(overhead):.1f} ms   "
        f"mean {statistics.fmean(overhead):.1f} ms"
    )
    from django_scopes import scopes_disabled

    from calls.models import Turn

    with scopes_disabled():
        sent = list(
            Turn.objects.filter(call__call_sid__in=sids, source="llm").values_list(
                "response_sent_ms", flat=True
            )
        )
    inside = [ms - args.ttft_ms for ms in sent if ms is not None]
    if inside:
        print(
            f"as stored by the server (prompt received -> first token sent, {len(inside)} turns):\n"
            f"  p50 {percentile(inside, 0.5):.1f} ms   p99 {percentile(inside, 0.99):.1f} ms"
        )
    print(
        f"  ({elapsed:.1f} s in all; load average {os.getloadavg()[0]:.2f}; daphne log: {server.log_path})"
    )


if __name__ == "__main__":
    main()
