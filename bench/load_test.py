"""Load test: many simulated phone calls at once against a real server, for a bounded time.

    .venv/bin/python bench/load_test.py [--calls 50] [--minutes 5] [--report docs/load-test.md]

Starts everything on loopback: daphne (the platform), a Celery worker, the fake Groq server
(150 ms to first token, 280 tokens/s) and the network-like "simulated" speech engine. `--calls`
callers each play whole calls back to back (greeting, `--turns` questions with `--pause` seconds
of caller speech between them, status callback), signed like Twilio signs them. At the end every
caller turn is looked up in the database: a turn without a stored answer is a lost turn.

Needs PostgreSQL and Redis (see bench/harness.py); writes only to its own database.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from harness import (
    bench_tenant,
    celery_worker,
    configure_environment,
    create_database,
    daphne_server,
    free_port,
    machine,
    percentile,
)

QUESTIONS = [
    "Can you repair a leaking radiator",
    "How much is a boiler service",
    "Do you work on Saturdays",
    "Can someone come this afternoon",
    "Is there a callout charge",
    "Do you fit new showers",
]


@dataclass
class Results:
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[str] = field(default_factory=list)
    turns_sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    turn_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    played: int = 0
    said: int = 0


def caller(
    index: int,
    *,
    base: str,
    token: str,
    number: str,
    until: float,
    turns: int,
    pause: float,
    results: Results,
) -> None:
    from devtools.simulator import TwilioSimulator

    simulator = TwilioSimulator(base_url=base, auth_token=token, timeout=30)
    n = 0
    try:
        while time.monotonic() < until:
            n += 1
            questions = [
                f"{QUESTIONS[(index + n + i) % len(QUESTIONS)]} caller {index} call {n} turn {i}?"
                for i in range(turns)
            ]
            try:
                call = simulator.run(
                    to=number, from_=f"+1555{index:07d}", utterances=questions, pause=pause
                )
            except Exception as exc:  # a transport failure is a result, not a crash
                with results.lock:
                    results.errors.append(f"caller {index}: {type(exc).__name__}: {exc}")
                continue
            with results.lock:
                results.calls.append(call.call_sid)
                for step in call.steps:
                    results.statuses[step.status] += 1
                    if step.caller:
                        results.turns_sent += 1
                        results.turn_ms.append(step.response_ms)
                    results.played += sum(1 for s in step.said if s.kind == "play")
                    results.said += sum(1 for s in step.said if s.kind == "say")
                results.statuses[call.status_code] += 1
    finally:
        simulator.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="concurrent callers")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--turns", type=int, default=4, help="questions per call")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between turns")
    parser.add_argument("--report", default="", help="also write the report to this file")
    args = parser.parse_args()

    from devtools.fake_groq import FakeGroqServer

    groq = FakeGroqServer(ttft_ms=150, tokens_per_second=280, answer_tokens=60).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = configure_environment(
        GROQ_BASE_URL=groq.base_url,
        GROQ_API_KEY="bench",
        PUBLIC_BASE_URL=base,
        ANSWER_CACHE_SECONDS="0",
    )

    import django

    django.setup()
    create_database()
    from django.conf import settings
    from django_scopes import scopes_disabled

    from calls.models import Turn

    _, _, number = bench_tenant(generous_limits=True)

    results = Results()
    try:
        with celery_worker(env, concurrency=32), daphne_server(env, port):
            started = time.monotonic()
            until = started + args.minutes * 60
            threads = [
                threading.Thread(
                    target=caller,
                    args=(i,),
                    kwargs=dict(
                        base=base,
                        token=settings.TWILIO_AUTH_TOKEN,
                        number=number.number,
                        until=until,
                        turns=args.turns,
                        pause=args.pause,
                        results=results,
                    ),
                )
                for i in range(args.calls)
            ]
            for thread in threads:
                thread.start()
                time.sleep(args.pause / args.calls)  # spread the callers' rhythm
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
    finally:
        groq.stop()

    with scopes_disabled():
        turns = Turn.objects.filter(call__call_sid__in=results.calls)
        stored_caller = turns.filter(role="caller").count()
        stored_answers = turns.filter(role="assistant").count()
    lost = results.turns_sent - stored_answers
    server_errors = sum(n for status, n in results.statuses.items() if status >= 500)
    report = "\n".join(
        [
            "## Load test",
            "",
            f"Command: `.venv/bin/python bench/load_test.py --calls {args.calls} --minutes "
            f"{args.minutes:g} --turns {args.turns} --pause {args.pause:g}`",
            "",
            f"Machine: {machine()}; one daphne process, one Celery worker (32 threads), "
            "PostgreSQL and Redis on loopback; fake Groq 150 ms / 280 tokens/s / ~60 tokens; "
            "simulated speech 300 ms + 4 ms per character.",
            "",
            "| | |",
            "|---|---|",
            f"| concurrent callers | {args.calls} |",
            f"| duration | {elapsed:.0f} s |",
            f"| calls completed | {len(results.calls)} |",
            f"| caller turns sent | {results.turns_sent} |",
            f"| caller turns stored / answers stored | {stored_caller} / {stored_answers} |",
            f"| lost turns | {lost} |",
            f"| HTTP 5xx | {server_errors} |",
            f"| transport errors | {len(results.errors)} |",
            f"| turns per second | {results.turns_sent / elapsed:.1f} |",
            f"| gather response p50 / p90 / p99 | {percentile(results.turn_ms, 50):.0f} / "
            f"{percentile(results.turn_ms, 90):.0f} / {percentile(results.turn_ms, 99):.0f} ms |",
            f"| sentences played as audio / said by <Say> | {results.played} / {results.said} |",
            f"| HTTP statuses | {dict(sorted(results.statuses.items()))} |",
            "",
        ]
    )
    print(report)
    for error in results.errors[:10]:
        print("error:", error)
    if args.report:
        with open(args.report, "w") as handle:
            handle.write(report)
    sys.exit(0 if lost == 0 and server_errors == 0 and not results.errors else 1)


if __name__ == "__main__":
    main()
