"""How long a caller waits for the assistant while the LLM provider fails, per fault and mode.

    .venv/bin/python bench/faults.py [--calls 2] [--turns 4] [--only hang] [--output FILE]

For each fault the fake Groq server can inject (429 on every request, every request hanging
before its first token, only the main model hanging, 500 on every request, every stream cut
mid-answer, and no fault for comparison), `--calls` calls of `--turns` turns each are made in
gather mode (signed webhooks; the reply is the TwiML answer, speech made by a Celery worker with
the network-like "simulated" engine) and in relay mode (ConversationRelay over a real WebSocket;
the reply is the first text frame with the answer's or the apology's words: the "one moment"
filler line is counted apart). The reply time of a turn runs from the end of the caller's turn
(the gather webhook sent, the `prompt` frame sent) to the moment the caller can hear the reply.
The platform runs with its default settings: only the provider is at fault.

It starts what it needs (bench/harness.py): PostgreSQL and Redis databases of its own
(BENCH_DATABASE_URL, BENCH_REDIS_URL), the fake Groq server in its own process (150 ms to first
token, 280 tokens/s, ~60-token answers), a Celery worker and one daphne process. It prints a
Markdown table; nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    bench_tenant,
    celery_worker,
    configure_environment,
    create_database,
    daphne_server,
    fake_groq_process,
    free_port,
    machine,
    ms,
    now,
    percentile,
    python_speed_ns,
)

MAIN = "llama-3.3-70b-versatile"  # the assistants' default model; the fallback is the default too
FAULTS = {
    "none": {},
    "429 on every request": {"fail_rate": 1.0, "fail_kinds": ["429"]},
    "hang on every request": {"fail_rate": 1.0, "fail_kinds": ["hang"]},
    "main model hangs": "hang-main",
    "500 on every request": {"fail_rate": 1.0, "fail_kinds": ["500"]},
    "stream cut mid-answer": {"fail_rate": 1.0, "fail_kinds": ["cut"]},
}
MODES = ("gather", "relay")


@dataclass
class Cell:
    """The turns of one fault in one mode."""

    reply_ms: list[float] = field(default_factory=list)
    call_sids: list[str] = field(default_factory=list)
    requests: int = 0
    fillers: int = 0  # relay: turns that began with the "one moment" line
    errors: list[str] = field(default_factory=list)


def inject(groq, fault: str) -> None:
    groq.reset()
    setting = FAULTS[fault]
    if setting == "hang-main":
        groq.queue_fault("hang", model=MAIN, count=100_000)
    elif setting:
        groq.configure(**setting)


def gather_calls(caller, *, calls: int, turns: int, label: str, cell: Cell) -> None:
    for index in range(calls):
        call = caller.start()
        cell.call_sids.append(call["CallSid"])
        for turn in range(turns):
            question = f"{label}, call {index}, question {turn}: can you fix my boiler this week?"
            elapsed, status, _ = caller.say(call, question)
            if status != 200:
                cell.errors.append(f"gather answered {status}")
            cell.reply_ms.append(elapsed)
        caller.end(call)


async def relay_calls(
    *, base: str, token: str, number: str, calls: int, turns: int, label: str, cell: Cell
) -> None:
    import httpx
    import websockets

    from calls.phrases import ONE_MOMENT
    from calls.transports.signatures import sign
    from devtools.simulator import parse_connect

    async with httpx.AsyncClient(timeout=30) as http:
        for index in range(calls):
            params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+15550002222", "To": number}
            url = base + "/twilio/voice"
            signature = sign(url=url, params=params, auth_token=token)
            response = await http.post(url, data=params, headers={"X-Twilio-Signature": signature})
            socket_url, _, parameters = parse_connect(response.content)
            cell.call_sids.append(params["CallSid"])
            headers = {"X-Twilio-Signature": sign(url=socket_url, params={}, auth_token=token)}
            async with websockets.connect(socket_url, additional_headers=headers) as socket:
                setup = {"type": "setup", "callSid": params["CallSid"]}
                await socket.send(json.dumps({**setup, "customParameters": parameters}))
                for turn in range(turns):
                    question = f"{label}, call {index}, question {turn}: can you fix my boiler?"
                    sent = now()
                    prompt = {"type": "prompt", "voicePrompt": question, "last": True}
                    await socket.send(json.dumps(prompt))
                    first = None
                    while True:
                        frame = json.loads(await asyncio.wait_for(socket.recv(), 30))
                        if frame.get("type") != "text":
                            continue
                        words = frame.get("token", "").strip()
                        if words == ONE_MOMENT:
                            cell.fillers += 1
                        elif first is None and words:
                            first = now()
                        if frame.get("last"):
                            break
                    if first is None:
                        cell.errors.append("an answer without text")
                    cell.reply_ms.append(ms((first or now()) - sent))
                    await asyncio.sleep(0.3)


def outcomes(call_sids: list[str]) -> str:
    """What the callers got, from the stored turns: e.g. "8 llm (main)", "8 apology"."""
    from django_scopes import scopes_disabled

    from calls.models import Turn

    with scopes_disabled():
        turns = Turn.objects.filter(call__call_sid__in=call_sids, role=Turn.Role.ASSISTANT)
        counts = Counter()
        for turn in turns.exclude(source="system"):
            what = turn.source
            if turn.source == "llm":
                what += " (main)" if turn.model_used == MAIN else " (fallback)"
                if "stream broken" in turn.error:
                    what += " cut"
            counts[what] += 1
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2, help="calls per fault and mode")
    parser.add_argument("--turns", type=int, default=4, help="caller turns per call")
    parser.add_argument("--only", action="append", help="faults whose name contains this")
    parser.add_argument("--output", help="also write the table to this file")
    args = parser.parse_args()
    faults = [f for f in FAULTS if not args.only or any(o in f for o in args.only)]

    speed = python_speed_ns()
    with fake_groq_process() as (groq_url, groq):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = configure_environment(
            GROQ_BASE_URL=groq_url,
            GROQ_API_KEY="bench",
            PUBLIC_BASE_URL=base,
            ANSWER_CACHE_SECONDS="0",
        )
        import django

        django.setup()
        create_database()
        from django.conf import settings
        from gather import Caller

        _, _, gather_number = bench_tenant(generous_limits=True)
        _, _, relay_number = bench_tenant(mode="relay", tts_engine="say", generous_limits=True)
        token = settings.TWILIO_AUTH_TOKEN
        cells: dict[tuple[str, str], Cell] = {}
        with celery_worker(env), daphne_server(env, port):
            caller = Caller(base=base, token=token, number=gather_number.number)
            warm_up = caller.start()  # the first requests' one-off costs are not measured
            caller.say(warm_up, "Warming up: is anyone there?")
            caller.end(warm_up)
            for fault in faults:
                for mode in MODES:
                    cell = cells[fault, mode] = Cell()
                    inject(groq, fault)
                    label = f"{fault} ({mode})"
                    if mode == "gather":
                        gather_calls(
                            caller, calls=args.calls, turns=args.turns, label=label, cell=cell
                        )
                    else:
                        asyncio.run(
                            relay_calls(
                                base=base,
                                token=token,
                                number=relay_number.number,
                                calls=args.calls,
                                turns=args.turns,
                                label=label,
                                cell=cell,
                            )
                        )
                    cell.requests = len(groq.requests())
                    print(f"{label}: p50 {percentile(cell.reply_ms, 50):.0f} ms", flush=True)
            caller.close()
        groq.reset()

    lines = [
        "| fault | mode | turns | reply p50 (ms) | reply max (ms) | LLM requests per turn "
        "| what the caller got |",
        "|---|---|---|---|---|---|---|",
    ]
    for (fault, mode), cell in cells.items():
        turns = len(cell.reply_ms)
        lines.append(
            f"| {fault} | {mode} | {turns} | {percentile(cell.reply_ms, 50):.0f} "
            f"| {max(cell.reply_ms):.0f} | {cell.requests / max(1, turns):.1f} "
            f"| {outcomes(cell.call_sids)}"
            f"{f', {cell.fillers} after a filler line' if cell.fillers else ''}"
            f"{f'; errors: {len(cell.errors)}' if cell.errors else ''} |"
        )
    header = (
        f"{args.calls} calls x {args.turns} turns per fault and mode; {machine()}; "
        f"Python speed check {speed:.1f} ns/iteration (lower is faster)."
    )
    report = header + "\n\n" + "\n".join(lines) + "\n"
    print()
    print(report)
    if args.output:
        Path(args.output).write_text(report)


if __name__ == "__main__":
    main()
