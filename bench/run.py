"""The benchmark suite: how fast a caller hears the assistant, and how much one server holds.

    .venv/bin/python bench/run.py                  # everything; writes docs/benchmarks.md
    .venv/bin/python bench/run.py --quick          # a small run that checks it all works
    .venv/bin/python bench/run.py --only capacity  # some scenarios (latency, overhead,
                                                   # capacity, throughput)

It starts what it measures: one daphne process (the platform), a Celery worker, PostgreSQL and
Redis databases of its own (bench/harness.py), the fake Groq server in its own process (default
150 ms to first token, 280 tokens/s, ~60-token answers) and the network-like "simulated" speech
engine (300 ms + 4 ms per character). Nothing here asserts timings: it reports them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import scale_out
from harness import (
    ROOT,
    bench_tenant,
    celery_worker,
    configure_environment,
    create_database,
    daphne_server,
    fake_groq_process,
    free_port,
    machine,
    percentile,
    process_cpu_seconds,
    process_rss_mb,
    python_speed_ns,
    table,
)

QUESTION = "Can you repair a leaking radiator in the kitchen this week?"
FIXED_ANSWER = (
    "Yes, we can repair it this week. A plumber can come on Thursday morning. "
    "Shall I book that for you?"
)
ONE_SERVER_SCENARIOS = ["latency", "overhead", "capacity", "throughput"]
# overload: one process past its LOAD_MAX_SESSIONS; scaleout: 1 and --processes servers behind
# HAProxy, and one of two killed mid-call (bench/scale_out.py).
SCENARIOS = [*ONE_SERVER_SCENARIOS, "overload", "scaleout"]
RHYTHM = 10.0  # a caller's rhythm: seconds between the end of an answer and the next prompt


def versions() -> str:
    from importlib.metadata import version

    names = ["django", "channels", "daphne", "celery", "groq", "twilio", "psycopg", "redis"]
    return ", ".join(f"{name} {version(name)}" for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples: checks it works")
    parser.add_argument("--only", action="append", choices=SCENARIOS)
    parser.add_argument("--ttft-ms", type=float, default=150.0)
    parser.add_argument("--tps", type=float, default=280.0)
    parser.add_argument("--capacity", type=int, action="append", help="relay sessions (repeat)")
    parser.add_argument("--capacity-seconds", type=float, default=60.0)
    parser.add_argument("--idle-sessions", type=int, help="relay sessions held idle (1000)")
    parser.add_argument("--idle-seconds", type=float, help="how long they are idle (60)")
    parser.add_argument("--processes", type=int, default=2, help="scaleout: servers (and 1)")
    parser.add_argument("--scale-level", type=int, action="append", help="scaleout: sessions")
    parser.add_argument("--scale-seconds", type=float, default=30.0)
    parser.add_argument("--overload-limit", type=int, default=100, help="LOAD_MAX_SESSIONS")
    parser.add_argument("--overload-extra", type=int, default=400, help="calls beyond it")
    parser.add_argument(
        "--overload-rate", type=float, action="append", help="new calls per second (20, 80)"
    )
    parser.add_argument("--overload-seconds", type=float, default=40.0)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    wanted = set(args.only or SCENARIOS)
    samples = 3 if args.quick else 30
    levels = [1, 5] if args.quick else [1, 10, 50]
    throughput_levels = [5] if args.quick else [10, 25, 50]
    capacity_levels = args.capacity or ([10] if args.quick else [50, 200, 500, 1000])
    capacity_seconds = 15.0 if args.quick else args.capacity_seconds
    idle_sessions = args.idle_sessions or (10 if args.quick else 1000)
    idle_seconds = args.idle_seconds or (5.0 if args.quick else 60.0)
    pause = RHYTHM
    steady_seconds = 5.0 if args.quick else 25.0
    rhythm_seconds = 12.0 if args.quick else 40.0

    sections: list[str] = []
    started = time.monotonic()
    speed_before = python_speed_ns()
    with fake_groq_process(ttft_ms=args.ttft_ms, tps=args.tps) as (groq_url, groq):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = configure_environment(
            GROQ_BASE_URL=groq_url,
            GROQ_API_KEY="bench",
            PUBLIC_BASE_URL=base,
            ANSWER_CACHE_SECONDS="0",
            TTS_WAIT_SECONDS="5",
            WEBHOOK_DEADLINE_SECONDS="12",
        )

        import django

        django.setup()
        create_database()
        from django.conf import settings
        from gather import Caller, concurrent_turns, pipelined_first_audio, sequential_first_audio
        from relay import RelayStats, run_sessions

        _, assistant, number = bench_tenant(generous_limits=True)
        _, _, relay_number = bench_tenant(mode="relay", tts_engine="say", generous_limits=True)
        token = settings.TWILIO_AUTH_TOKEN

        def make_caller() -> Caller:
            return Caller(base=base, token=token, number=number.number)

        def relay_steady(sessions: int, pause: float, seconds: float) -> RelayStats:
            """`sessions` opened first, then asking with `pause` between an answer and the next
            prompt for `seconds`, their first prompts spread over one pause."""
            from relay import close_all, drive, open_sessions

            stats = RelayStats()

            async def phase() -> None:
                sockets = await open_sessions(
                    base=base,
                    token=token,
                    number=relay_number.number,
                    count=sessions,
                    stats=stats,
                )
                await drive(sockets, until=time.monotonic() + seconds, pause=pause, stats=stats)
                await close_all(sockets)

            asyncio.run(phase())
            return stats

        def relay(sessions: int, prompts: int, pause: float) -> RelayStats:
            stats = RelayStats()
            asyncio.run(
                run_sessions(
                    base=base,
                    token=token,
                    number=relay_number.number,
                    sessions=sessions,
                    prompts=prompts,
                    pause=pause,
                    stats=stats,
                )
            )
            return stats

        with celery_worker(env, concurrency=32) as worker:
            if wanted & set(ONE_SERVER_SCENARIOS):
                with daphne_server(env, port) as server:
                    if "latency" in wanted:
                        sequential, pipelined = [], []
                        played = said = 0
                        caller = make_caller()
                        for i in range(samples):
                            sequential.append(
                                sequential_first_audio(
                                    assistant=assistant, question=f"{QUESTION} {i}"
                                )
                            )
                            elapsed, p, s = pipelined_first_audio(
                                caller, question=f"{QUESTION} #{i}"
                            )
                            pipelined.append(elapsed)
                            played, said = played + p, said + s
                        caller.close()
                        streamed = relay(1, samples, 0.2)
                        sections.append(
                            table(
                                "1. Time to first audio, one caller turn (~60-token answer)",
                                {
                                    "a. sequential: whole answer, then TTS, then respond": sequential,
                                    "b. gather mode: sentences to TTS while the LLM streams": pipelined,
                                    "c. relay mode: prompt to first text frame": streamed.first_ms,
                                },
                                baseline="a. sequential: whole answer, then TTS, then respond",
                            )
                            + f"\nGather replies: {played} sentences played as audio, {said} said by "
                            "`<Say>` (audio not ready in time). In relay mode Twilio speaks the text as "
                            "it arrives; relay errors: "
                            f"{len(streamed.errors)}.\n"
                        )

                    if "overhead" in wanted:
                        # Calls asking back to back (0.5 s after each answer: at 50 calls more answers per
                        # second than one process holds at p99 <= 50 ms, see 3) and at a caller's rhythm
                        # (RHYTHM s after each answer, as in 3). Relay sessions are opened first (set-up
                        # is measured in 3); every level's first prompts are spread over one pause.
                        rows, notes = {}, []
                        back_to_back = 0.5
                        for level in levels:
                            stats = relay_steady(level, back_to_back, steady_seconds)
                            rows[f"relay, {level} call(s) asking back to back"] = [
                                value - args.ttft_ms for value in stats.first_ms
                            ]
                            notes.append(f"relay {level} back to back: {len(stats.errors)} errors")
                        for level in levels[1:]:
                            stats = relay_steady(level, RHYTHM, rhythm_seconds)
                            rows[f"relay, {level} calls at a caller's rhythm"] = [
                                value - args.ttft_ms for value in stats.first_ms
                            ]
                            notes.append(
                                f"relay {level} at a caller's rhythm: {len(stats.errors)} errors"
                            )
                        # Instant LLM and a speech-cache hit: what is left is the platform itself.
                        groq.configure(ttft_ms=0, tokens_per_second=0, answer=FIXED_ANSWER)
                        _warm_speech_cache(make_caller)
                        for level in levels:
                            latencies, errors, _ = concurrent_turns(
                                make_caller,
                                concurrency=level,
                                turns_each=max(3, samples // level + 2),
                                question=QUESTION,
                                pause=back_to_back,
                                stagger=True,
                            )
                            rows[f"gather, {level} call(s) asking back to back"] = latencies
                            notes.append(f"gather {level} back to back: {errors} failed turns")
                        for level in levels[1:]:
                            latencies, errors, _ = concurrent_turns(
                                make_caller,
                                concurrency=level,
                                turns_each=max(2, round(rhythm_seconds / RHYTHM)),
                                question=QUESTION,
                                pause=RHYTHM,
                                stagger=True,
                            )
                            rows[f"gather, {level} calls at a caller's rhythm"] = latencies
                            notes.append(
                                f"gather {level} at a caller's rhythm: {errors} failed turns"
                            )
                        groq.configure(
                            ttft_ms=args.ttft_ms, tokens_per_second=args.tps, answer=None
                        )
                        sections.append(
                            table(
                                "2. Platform overhead (relay: first text frame minus the LLM's time to "
                                "first token; gather: response time with an instant LLM and cached "
                                f"speech). Back to back: the next turn 0.5 s after each answer; a "
                                f"caller's rhythm: {RHYTHM:g} s after",
                                rows,
                                baseline=f"relay, {levels[0]} call(s) asking back to back",
                            )
                            + "\nErrors: "
                            + ", ".join(notes)
                            + ".\n"
                        )

                    if "capacity" in wanted:
                        # Idle sessions first: the RSS they add is only seen before the levels below
                        # have grown the heap (Python keeps memory it once used).
                        idle = _idle_hold(
                            server.pid,
                            base=base,
                            token=token,
                            number=relay_number.number,
                            sessions=idle_sessions,
                            seconds=idle_seconds,
                        )
                        sections.append(
                            _capacity(
                                server.pid,
                                base=base,
                                token=token,
                                number=relay_number.number,
                                levels=capacity_levels,
                                seconds=capacity_seconds,
                                pause=pause,
                                ttft_ms=args.ttft_ms,
                            )
                            + idle
                        )

                    if "throughput" in wanted:
                        groq.configure(ttft_ms=0, tokens_per_second=0, answer=FIXED_ANSWER)
                        _warm_speech_cache(make_caller)
                        lines = [
                            "### 4. Gather throughput (instant LLM, cached speech, no pauses)",
                            "",
                            "| concurrent calls | turns | turns/s | p50 (ms) | p99 (ms) | failed |",
                            "|---|---|---|---|---|---|",
                        ]
                        best = 0.0
                        for level in throughput_levels:
                            latencies, errors, seconds = concurrent_turns(
                                make_caller,
                                concurrency=level,
                                turns_each=3 if args.quick else 10,
                                question=QUESTION,
                            )
                            rate = len(latencies) / seconds
                            if not errors:
                                best = max(best, rate)
                            lines.append(
                                f"| {level} | {len(latencies)} | {rate:.1f} | "
                                f"{percentile(latencies, 50):.0f} | {percentile(latencies, 99):.0f} | "
                                f"{errors} |"
                            )
                        lines += [
                            "",
                            f"Best rate with no failed turn: **{best:.1f} turns/s** (one daphne process).",
                            "",
                        ]
                        sections.append("\n".join(lines))

            if "overload" in wanted:
                sections.append(
                    scale_out.overload(
                        env=env,
                        token=token,
                        number=relay_number.number,
                        limit=args.overload_limit,
                        extra=args.overload_extra,
                        rates=args.overload_rate or [20.0, 80.0],
                        seconds=15.0 if args.quick else args.overload_seconds,
                        pause=pause,
                        ttft_ms=args.ttft_ms,
                    )
                )
            if "scaleout" in wanted:
                sections.append(
                    scale_out.scale_out(
                        env=env,
                        token=token,
                        number=relay_number.number,
                        database=settings.DATABASES["default"]["NAME"],
                        processes=args.processes,
                        levels=args.scale_level or ([10] if args.quick else [100, 200, 300, 400]),
                        seconds=15.0 if args.quick else args.scale_seconds,
                        pause=pause,
                        ttft_ms=args.ttft_ms,
                        workdir=Path(env["MEDIA_ROOT"]),
                        extra_parts={"Celery worker": [worker.pid]},
                    )
                )

    speed_after = python_speed_ns()
    flags = " --quick" if args.quick else ""
    flags += "".join(f" --only {name}" for name in args.only or [])
    flags += "".join(f" --capacity {level}" for level in args.capacity or [])
    flags += "".join(f" --scale-level {level}" for level in args.scale_level or [])
    flags += "".join(f" --overload-rate {rate:g}" for rate in args.overload_rate or [])
    for name in (
        "capacity_seconds",
        "idle_sessions",
        "idle_seconds",
        "ttft_ms",
        "tps",
        "processes",
        "scale_seconds",
        "overload_limit",
        "overload_extra",
        "overload_seconds",
    ):
        value = getattr(args, name)
        if value is not None and value != parser.get_default(name):
            flags += f" --{name.replace('_', '-')} {value:g}"
    command = f".venv/bin/python bench/run.py{flags}"
    measured = f"Measured by `{command}` on {time.strftime('%Y-%m-%d')}."
    sections = [f"{section.rstrip()}\n\n{measured}\n" for section in sections]
    header = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Latest run: `{command}` ({time.monotonic() - started:.0f} s). Machine: {machine()}.",
            f"Versions: {versions()}.",
            f"Python speed check (a fixed pure-Python loop, best of 3; CPU figures below scale "
            f"with it): {speed_before:.0f} ns per iteration before the run, {speed_after:.0f} "
            "after.",
            f"Providers on loopback: fake Groq {args.ttft_ms:g} ms to first token, "
            f"{args.tps:g} tokens/s, ~60-token answers (its own process); speech "
            f"{settings.TTS_SIMULATED_BASE_MS:g} ms + {settings.TTS_SIMULATED_PER_CHAR_MS:g} ms "
            "per character. One daphne process, one Celery worker (32 threads), PostgreSQL and "
            "Redis on the same machine; the measuring client runs there too. Each section "
            "says which run measured it: a run keeps the sections it did not measure, and "
            "hand-written ones.",
            "",
        ]
    )
    print(header + "\n" + "\n".join(sections))
    if not args.quick:
        output = Path(args.output)
        previous = output.read_text() if output.exists() else ""
        output.write_text(merged_report(previous, header, sections))
    sys.exit(0)


def _section_key(section: str) -> str:
    """A section's identity across runs: its number ("### 3. ...": "3"), else its heading."""
    heading = section.lstrip().split("\n", 1)[0].lstrip("#").strip()
    number = heading.split(".", 1)[0]
    return number if number.isdigit() else heading


def _split_sections(text: str) -> tuple[str, list[str]]:
    """(what comes before the first "##"/"###" heading, the sections in order)."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("## ") or line.startswith("### "):
            parts.append([])
        parts[-1].append(line)
    return "\n".join(parts[0]), ["\n".join(part).rstrip() + "\n" for part in parts[1:]]


def merged_report(previous: str, header: str, sections: list[str]) -> str:
    """The new header, then the previous file's sections in their order, each replaced by this
    run's section with the same key; sections of this run that are new go at the end."""
    fresh = {_section_key(section): section for section in sections}
    before, kept = _split_sections(previous)
    # A file written before sections named their run: its command was in the header.
    old_command = next(
        (line.split("`")[1] for line in before.splitlines() if line.startswith("Command: `")), ""
    )
    body = []
    for section in kept:
        key = _section_key(section)
        if key in fresh:
            body.append(fresh.pop(key))
        elif key.isdigit() and old_command and "Measured by `" not in section:
            body.append(f"{section.rstrip()}\n\nMeasured by `{old_command}`.\n")
        else:
            body.append(section)
    body += fresh.values()
    return header + "\n" + "\n".join(part.rstrip() + "\n" for part in body)


def _warm_speech_cache(make_caller) -> None:
    warm = make_caller()
    call = warm.start()
    for _ in range(2):  # the first turn makes the audio, the second finds it cached
        warm.say(call, QUESTION)
    warm.end(call)
    warm.close()


def _capacity(
    pid: int,
    *,
    base: str,
    token: str,
    number: str,
    levels: list[int],
    seconds: float,
    pause: float,
    ttft_ms: float,
) -> str:
    from relay import RelayStats, close_all, drive, open_sessions

    lines = [
        f"### 3. Capacity of one server process in relay mode ({seconds:g} s per level, a "
        f"prompt every {pause:g} s per session after the whole answer)",
        "",
        "| sessions | answers/s | tokens/s | text frames per answer | overhead p50 (ms) | "
        "overhead p99 (ms) | errors | CPU ms per answer | RSS per session (KB) | "
        "CPU ms per connection set-up | CPU ms per call end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    best = 0
    failures: list[str] = []
    for level in levels:
        stats = RelayStats()
        rss_before, cpu_before = process_rss_mb(pid), process_cpu_seconds(pid)

        async def phase(level: int, stats: RelayStats) -> tuple[float, float, float, float]:
            sockets = await open_sessions(
                base=base, token=token, number=number, count=level, stats=stats
            )
            cpu_open = process_cpu_seconds(pid)
            rss_open = process_rss_mb(pid)
            started = time.monotonic()
            await drive(sockets, until=started + seconds, pause=pause, stats=stats)
            elapsed = time.monotonic() - started
            # The answers' CPU is read before the calls end: a call's end (its cost report, the
            # analysis task, the `call.ended` events) is a cost per call, counted on its own.
            cpu_answered = process_cpu_seconds(pid)
            await close_all(sockets)
            return cpu_open, rss_open, elapsed, cpu_answered

        cpu_open, rss_open, elapsed, cpu_after = asyncio.run(phase(level, stats))
        overhead = [value - ttft_ms for value in stats.first_ms]
        p99 = percentile(overhead, 99)
        if not stats.errors and p99 <= 50:
            best = max(best, level)
        lines.append(
            f"| {level} | {stats.answers / elapsed:.1f} | {stats.tokens / elapsed:.0f} | "
            f"{stats.frames / max(1, stats.answers):.1f} | "
            f"{percentile(overhead, 50):.1f} | {p99:.1f} | {len(stats.errors)} | "
            f"{(cpu_after - cpu_open) * 1000 / max(1, stats.answers):.1f} | "
            f"{(rss_open - rss_before) * 1024 / level:.0f} | "
            f"{(cpu_open - cpu_before) * 1000 / level:.1f} | "
        )
        if stats.errors:
            failures.append(_errors_line(f"at {level} sessions", stats.errors))
        _wait_until_quiet(pid)  # the calls closed and any backlog drained
        lines[-1] += f"{(process_cpu_seconds(pid) - cpu_after) * 1000 / level:.1f} |"
    lines += [
        "",
        *failures,
        f"Largest level with zero errors and overhead p99 ≤ 50 ms: **{best or 'none'}**.",
        "",
    ]
    return "\n".join(lines)


def _errors_line(where: str, errors: list[str]) -> str:
    """The number of errors and the most frequent kinds (the message up to its first colon
    after the step)."""
    kinds: dict[str, int] = {}
    for error in errors:
        kind = ":".join(error.split(":")[:2])
        kinds[kind] = kinds.get(kind, 0) + 1
    common = sorted(kinds.items(), key=lambda item: -item[1])[:3]
    return f"Errors {where}: " + ", ".join(f"{n} × `{kind}`" for kind, n in common) + ".\n"


def _wait_until_quiet(pid: int, *, limit: float = 120.0) -> None:
    """Wait until the server process uses under 5 % of a core for a second (at most `limit`)."""
    deadline = time.monotonic() + limit
    time.sleep(2)
    while time.monotonic() < deadline:
        before = process_cpu_seconds(pid)
        time.sleep(1)
        if process_cpu_seconds(pid) - before < 0.05:
            return


def _idle_hold(
    pid: int, *, base: str, token: str, number: str, sessions: int, seconds: float
) -> str:
    """Sessions opened and left idle (a caller listening, or thinking), then each asked once:
    are they all still there, what do they cost while idle?"""
    from relay import RelayStats, ask_each_once, close_all, open_sessions

    stats = RelayStats()
    spread = max(10.0, sessions / 20)  # about 20 questions a second after the pause
    rss_before = process_rss_mb(pid)

    async def phase() -> tuple[float, float, float]:
        sockets = await open_sessions(
            base=base, token=token, number=number, count=sessions, stats=stats
        )
        await asyncio.sleep(2)  # the last set-ups finish
        rss_open, cpu_idle = process_rss_mb(pid), process_cpu_seconds(pid)
        await asyncio.sleep(seconds)
        idle_cpu = process_cpu_seconds(pid) - cpu_idle
        await ask_each_once(sockets, spread=spread, stats=stats)
        await close_all(sockets)
        return rss_open, idle_cpu, len(sockets)

    rss_open, idle_cpu, opened = asyncio.run(phase())
    _wait_until_quiet(pid)
    return "\n".join(
        [
            "",
            f"Held idle: {sessions} sessions opened, left without a prompt for {seconds:g} s, then "
            f"each asked once (the questions spread over {spread:g} s).",
            "",
            "| sessions | opened | answered after the pause | errors | RSS per idle "
            "session (KB) | server CPU while idle (% of a core) |",
            "|---|---|---|---|---|---|",
            f"| {sessions} | {opened} | {stats.answers} | {len(stats.errors)} | "
            f"{(rss_open - rss_before) * 1024 / max(1, sessions):.0f} | "
            f"{idle_cpu * 100 / seconds:.1f} |",
            "",
            *([_errors_line("holding idle sessions", stats.errors)] if stats.errors else []),
        ]
    )


if __name__ == "__main__":
    main()
