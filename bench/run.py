"""The benchmark suite: how fast a caller hears the assistant, and how much one server holds.

    .venv/bin/python bench/run.py                  # everything; writes docs/benchmarks.md
    .venv/bin/python bench/run.py --quick          # a small run that checks it all works
    .venv/bin/python bench/run.py --only gather    # some scenarios

It starts what it measures: one daphne process (the platform), a Celery worker, PostgreSQL and
Redis databases of its own (bench/harness.py), the fake Groq server (default 150 ms to first
token, 280 tokens/s, ~60-token answers) and the network-like "simulated" speech engine (300 ms +
4 ms per character). Nothing here asserts timings: it reports them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness import (
    ROOT,
    bench_tenant,
    celery_worker,
    configure_environment,
    create_database,
    daphne_server,
    free_port,
    machine,
    percentile,
    table,
)

QUESTION = "Can you repair a leaking radiator in the kitchen this week?"
FIXED_ANSWER = (
    "Yes, we can repair it this week. A plumber can come on Thursday morning. "
    "Shall I book that for you?"
)


def versions() -> str:
    from importlib.metadata import version

    names = ["django", "channels", "daphne", "celery", "groq", "twilio", "psycopg", "redis"]
    return ", ".join(f"{name} {version(name)}" for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples: checks it works")
    parser.add_argument("--only", action="append", choices=["latency", "overhead", "throughput"])
    parser.add_argument("--ttft-ms", type=float, default=150.0)
    parser.add_argument("--tps", type=float, default=280.0)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    wanted = set(args.only or ["latency", "overhead", "throughput"])
    samples = 3 if args.quick else 30
    levels = [1, 5] if args.quick else [1, 10, 50]
    throughput_levels = [5] if args.quick else [10, 25, 50, 100]

    from assistants.fake_groq import FakeGroqServer

    groq = FakeGroqServer(ttft_ms=args.ttft_ms, tokens_per_second=args.tps, answer_tokens=60)
    groq.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = configure_environment(
        GROQ_BASE_URL=groq.base_url, GROQ_API_KEY="bench", PUBLIC_BASE_URL=base,
        ANSWER_CACHE_SECONDS="0", TTS_WAIT_SECONDS="5", WEBHOOK_DEADLINE_SECONDS="12",
    )  # fmt: skip

    import django

    django.setup()
    create_database()
    from django.conf import settings
    from gather import Caller, concurrent_turns, pipelined_first_audio, sequential_first_audio

    _, assistant, number = bench_tenant(generous_limits=True)
    token = settings.TWILIO_AUTH_TOKEN

    def make_caller() -> Caller:
        return Caller(base=base, token=token, number=number.number)

    sections: list[str] = []
    started = time.monotonic()
    try:
        with celery_worker(env, concurrency=32), daphne_server(env, port):
            if "latency" in wanted:
                sequential, pipelined = [], []
                played = said = 0
                caller = make_caller()
                for i in range(samples):
                    sequential.append(
                        sequential_first_audio(assistant=assistant, question=f"{QUESTION} {i}")
                    )
                    elapsed, p, s = pipelined_first_audio(caller, question=f"{QUESTION} #{i}")
                    pipelined.append(elapsed)
                    played, said = played + p, said + s
                caller.close()
                sections.append(
                    table(
                        "1. Time to first audio, one caller turn (~60-token answer)",
                        {"a. sequential: whole answer, then TTS, then respond": sequential,
                         "b. gather mode: sentences to TTS while the LLM streams": pipelined},
                        baseline="a. sequential: whole answer, then TTS, then respond",
                    )  # fmt: skip
                    + f"\nGather replies: {played} sentences played as audio, {said} said by "
                    "`<Say>` (audio not ready in time).\n"
                )

            # Instant providers and a speech-cache hit: what is left is the platform itself.
            groq.configure(ttft_ms=0, tokens_per_second=0, answer=FIXED_ANSWER)
            warm = make_caller()
            call = warm.start()
            for _ in range(2):  # the first turn makes the audio, the second finds it cached
                warm.say(call, QUESTION)
            warm.end(call)
            warm.close()

            if "overhead" in wanted:
                rows, notes = {}, []
                for level in levels:
                    latencies, errors, _ = concurrent_turns(
                        make_caller, concurrency=level, turns_each=max(3, samples // level + 2),
                        question=QUESTION,
                    )  # fmt: skip
                    rows[f"{level} concurrent call(s)"] = latencies
                    notes.append(f"{level}: {errors} failed turns")
                sections.append(
                    table(
                        "2. Platform overhead: gather response with instant LLM and cached speech",
                        rows, baseline=f"{levels[0]} concurrent call(s)",
                    )  # fmt: skip
                    + "\nFailed turns per level: " + ", ".join(notes) + ".\n"
                )

            if "throughput" in wanted:
                lines = [
                    "### 4. Gather throughput (instant LLM, cached speech, no pauses)",
                    "",
                    "| concurrent calls | turns | turns/s | p50 (ms) | p99 (ms) | failed |",
                    "|---|---|---|---|---|---|",
                ]
                best = 0.0
                for level in throughput_levels:
                    latencies, errors, seconds = concurrent_turns(
                        make_caller, concurrency=level, turns_each=3 if args.quick else 10,
                        question=QUESTION,
                    )  # fmt: skip
                    rate = len(latencies) / seconds
                    if not errors:
                        best = max(best, rate)
                    lines.append(
                        f"| {level} | {len(latencies)} | {rate:.1f} | "
                        f"{percentile(latencies, 50):.0f} | {percentile(latencies, 99):.0f} | "
                        f"{errors} |"
                    )
                lines += ["", f"Best rate with no failed turn: **{best:.1f} turns/s** "
                          "(one daphne process).", ""]  # fmt: skip
                sections.append("\n".join(lines))
    finally:
        groq.stop()

    command = "`.venv/bin/python bench/run.py" + (" --quick" if args.quick else "") + "`"
    report = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Command: {command} ({time.monotonic() - started:.0f} s). Machine: {machine()}.",
            f"Versions: {versions()}.",
            f"Providers on loopback: fake Groq {args.ttft_ms:g} ms to first token, "
            f"{args.tps:g} tokens/s, ~60-token answers; speech "
            f"{settings.TTS_SIMULATED_BASE_MS:g} ms + {settings.TTS_SIMULATED_PER_CHAR_MS:g} ms "
            "per character. One daphne process, one Celery worker (32 threads), PostgreSQL and "
            "Redis on the same machine.",
            "",
            *sections,
        ]
    )
    print(report)
    if not args.quick:
        Path(args.output).write_text(report + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
