"""Turn latency with one tool call against the same turn without: what a tool costs the caller.

    .venv/bin/python bench/tools.py [--prompts 100] [--ttft-ms 150] [--tool-ms 100]

Relay mode, through a real daphne process: each prompt's time to the first and to the last
`text` frame, for an assistant whose model calls a booking tool (a real HTTP server on loopback
answering in `--tool-ms`) and for one without tools. The fake Groq server (its own process)
answers both rounds of a tool turn after `--ttft-ms`. The platform's share of a turn is what is
left after the model's and the tool's own time: ttft (x2 with the tool) + the tool's delay.

Starts everything itself; the database is DATABASE_URL (else a temporary SQLite file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.harness import fake_groq_process, percentile, python_speed_ns  # noqa: E402

QUESTION = "Can I book a cleaning on Tuesday?"
NUMBERS = {"with a tool": "+14155550981", "without tools": "+14155550982"}


def prepare(tool_url: str) -> None:
    """Two relay assistants of a bench tenant: one with a booking tool, one without."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django_scopes import scopes_disabled

    from assistants.models import AssistantConfig
    from tenants.models import PhoneNumber, RateLimit, Tenant
    from tools.models import HttpTool
    from tools.services import http_tool_create

    for alias in settings.DATABASES:
        call_command("migrate", database=alias, interactive=False, verbosity=0)
    with scopes_disabled():
        tenant, _ = Tenant.objects.get_or_create(slug="bench-tools", defaults={"name": "Bench"})
        for name, number in NUMBERS.items():
            assistant, _ = AssistantConfig.objects.update_or_create(
                tenant=tenant,
                name=name,
                defaults={"mode": AssistantConfig.Mode.RELAY, "tts_engine": "say"},
            )
            PhoneNumber.objects.update_or_create(
                number=number, defaults={"tenant": tenant, "assistant": assistant}
            )
        HttpTool.objects.filter(tenant=tenant).delete()
        http_tool_create(
            assistant=AssistantConfig.objects.get(tenant=tenant, name="with a tool"),
            name="book_appointment",
            description="Book a visit.",
            parameters={
                "type": "object",
                "properties": {"service": {"type": "string"}, "day": {"type": "string"}},
                "required": ["service", "day"],
            },
            url=tool_url,
        )
        for kind in RateLimit.Kind.values:
            RateLimit.objects.update_or_create(
                tenant=tenant,
                kind=kind,
                defaults={"limit": 10**9, "window_seconds": 60, "action": "speak_continue"},
            )


async def one_call(
    base_url: str, token: str, number: str, prompts: int
) -> list[tuple[float, float]]:
    """(ms to the first text frame, ms to the last) of each prompt of one relay call."""
    import httpx
    import websockets

    from calls.transports.signatures import sign
    from devtools.simulator import parse_connect

    call_sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": call_sid, "From": f"+1555{uuid.uuid4().int % 10**7:07d}", "To": number}
    url = base_url + "/twilio/voice"
    async with httpx.AsyncClient() as client:
        signature = sign(url=url, params=params, auth_token=token)
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    socket_url, _, parameters = parse_connect(response.content)
    headers = {"X-Twilio-Signature": sign(url=socket_url, params={}, auth_token=token)}
    timings = []
    async with websockets.connect(socket_url, additional_headers=headers) as socket:
        await socket.send(
            json.dumps({"type": "setup", "callSid": call_sid, "customParameters": parameters})
        )
        for index in range(prompts):
            # Each question differs (no answer cache); the booking tool's rule still matches.
            question = f"{QUESTION} This is request {index} of call {call_sid}."
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
                    timings.append(((first - sent) * 1000, (time.perf_counter() - sent) * 1000))
                    break
    return timings


def row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {len(values)} | {percentile(values, 50):.0f} | {percentile(values, 99):.0f} "
        f"| {statistics.fmean(values):.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--per-call", type=int, default=10)
    parser.add_argument("--ttft-ms", type=float, default=150.0)
    parser.add_argument("--tool-ms", type=float, default=100.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tools-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ.update(
        {"LOG_LEVEL": "WARNING", "PUBLIC_BASE_URL": "", "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"}
    )

    from devtools.tool_server import ToolServer

    tools = ToolServer().start()
    tools.route(
        "/book", body={"message": "Booked for Tuesday, reference AB12."}, delay=args.tool_ms / 1000
    )
    prepare(tools.url("/book"))

    from django.conf import settings

    from devtools.testing import FAKE_GROQ_KEY, start_daphne, stop_daphne

    speed = python_speed_ns()
    results: dict[str, list[tuple[float, float]]] = {}
    with fake_groq_process(ttft_ms=args.ttft_ms, tps=2000, answer_tokens=30) as (groq_url, _):
        env = {
            **os.environ,
            "SECRET_KEY": settings.SECRET_KEY,
            "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
            "PYTHONUNBUFFERED": "1",
            "GROQ_BASE_URL": groq_url,
            "GROQ_API_KEY": FAKE_GROQ_KEY,
        }
        server = start_daphne(env=env, log_path=workdir / "daphne.log")
        try:
            for name, number in NUMBERS.items():
                calls = max(1, args.prompts // args.per_call)
                timings: list[tuple[float, float]] = []
                for _ in range(calls):
                    timings += asyncio.run(
                        one_call(server.base_url, settings.TWILIO_AUTH_TOKEN, number, args.per_call)
                    )
                results[name] = timings
        finally:
            stop_daphne(server)
            tools.stop()

    requests = len(tools.received("/book"))
    print(f"# Tool calls: turn latency with one tool ({args.tool_ms:.0f} ms) vs none, relay mode\n")
    print(
        f"fake Groq ttft {args.ttft_ms:.0f} ms per request; {requests} tool requests; "
        f"Python speed check {speed:.1f} ns/iteration; load average {os.getloadavg()[0]:.2f}\n"
    )
    print("| | n | p50 (ms) | p99 (ms) | mean (ms) |")
    print("|---|---|---|---|---|")
    outside = {"with a tool": 2 * args.ttft_ms + args.tool_ms, "without tools": args.ttft_ms}
    for name, timings in results.items():
        first = [f for f, _ in timings]
        print(row(f"{name}: prompt -> first text frame", first))
        print(row(f"{name}: prompt -> last text frame", [last for _, last in timings]))
        share = [f - outside[name] for f in first]
        print(row(f"{name}: platform share of the first frame", share))
    with_tool = percentile([f for f, _ in results["with a tool"]], 50)
    without = percentile([f for f, _ in results["without tools"]], 50)
    print(
        f"\nfirst frame p50: {with_tool:.0f} ms with the tool vs {without:.0f} ms without "
        f"({with_tool / without:.2f}x; the model's second round and the tool account for "
        f"{args.ttft_ms + args.tool_ms:.0f} ms of the {with_tool - without:.0f} ms difference)"
    )


if __name__ == "__main__":
    main()
